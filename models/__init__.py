"""Engine models: the slotted reference engine, fitted/calibrated models, KV sizing.

Imported as ``slo_opt.models``.
"""

from slo_opt.models.catalog import get_engine, list_profiles
from slo_opt.models.kv import ModelShape, kv_bytes_per_token, kv_capacity_tokens, weight_bytes
from slo_opt.models.layerwise import LayerwiseEngineModel
from slo_opt.models.linear import LinearEngineModel
from slo_opt.models.slot import SlotEngine
from slo_opt.models.table import TableEngineModel

__all__ = [
    "LayerwiseEngineModel",
    "LinearEngineModel",
    "ModelShape",
    "SlotEngine",
    "TableEngineModel",
    "get_engine",
    "kv_bytes_per_token",
    "kv_capacity_tokens",
    "list_profiles",
    "weight_bytes",
]
