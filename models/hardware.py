"""Typed catalogue of accelerators used by the roofline and power models.

Every number carries a source string. "datasheet" numbers are vendor peaks; dense tensor
FLOP/s are without structured sparsity. Idle power is the board power seen with nothing
running (a typical reading, or our own NVML sample where the source says "measured").
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPU", "GPUS", "get_gpu"]


@dataclass(frozen=True, slots=True)
class GPU:
    """One accelerator.

    Parameters
    ----------
    key : str
        Catalogue key (``"h100"``), used in profile names ``<gpu>/<model>``.
    name : str
        Marketing name.
    peak_bf16_flops_per_s : float
        Dense bf16/fp16 tensor FLOP/s (FP32 accumulate where the vendor distinguishes).
    memory_bandwidth_bytes_per_s : float
        Peak DRAM/HBM bandwidth.
    memory_bytes : float
        Device memory visible to the runtime.
    idle_power_w, max_power_w : float
        Idle board power and board power limit (TDP/TGP).
    host_bandwidth_bytes_per_s : float
        Host<->device link bandwidth per direction (theoretical; unified memory: DRAM BW).
    sources : dict
        Field name -> source string.
    """

    key: str
    name: str
    peak_bf16_flops_per_s: float
    memory_bandwidth_bytes_per_s: float
    memory_bytes: float
    idle_power_w: float
    max_power_w: float
    host_bandwidth_bytes_per_s: float
    sources: dict[str, str]

    def __post_init__(self) -> None:
        for f in ("peak_bf16_flops_per_s", "memory_bandwidth_bytes_per_s", "memory_bytes",
                  "idle_power_w", "max_power_w", "host_bandwidth_bytes_per_s"):
            if not getattr(self, f) > 0:
                raise ValueError(f"GPU {self.key}: {f} must be > 0")
        if self.idle_power_w >= self.max_power_w:
            raise ValueError(f"GPU {self.key}: idle power must be below max power")

    @property
    def ridge_flops_per_byte(self) -> float:
        """Arithmetic intensity where compute and memory time are equal."""
        return self.peak_bf16_flops_per_s / self.memory_bandwidth_bytes_per_s


_MIB = 2**20
_NV_H100 = "NVIDIA H100 Tensor Core GPU datasheet (SXM5), 2023"
_NV_H200 = "NVIDIA H200 Tensor Core GPU datasheet (SXM), 2024"
_NV_A100 = "NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB), 2021"
_NV_ADA = "NVIDIA Ada Lovelace GPU architecture whitepaper v2.02, appendix tables"
_NV_ORIN = "NVIDIA Jetson AGX Orin series datasheet / technical brief (64GB)"
_NV_PRO = "NVIDIA RTX PRO 6000 Blackwell Server Edition datasheet, 2025"
_TYPICAL_IDLE = "typical nvidia-smi idle reading (assumed, not measured by us)"
_TORCH_TOTAL = "total device memory as torch reports it (cudaMemGetInfo)"

GPUS: dict[str, GPU] = {
    g.key: g
    for g in (
        GPU("h100", "NVIDIA H100 80GB HBM3 (SXM5)", 989.4e12, 3.35e12, 85_017_493_504, 70.0, 700.0,
            64e9, {
                "peak_bf16_flops_per_s": _NV_H100 + ": 1,979 TFLOPS bf16 with sparsity / 2",
                "memory_bandwidth_bytes_per_s": _NV_H100 + ": 3.35 TB/s",
                "memory_bytes": _TORCH_TOTAL + " on our H100 (profiles/h100/provenance.json; "
                "nvidia-smi: 81559 MiB)",
                "idle_power_w": _TYPICAL_IDLE + "; refitted from our NVML samples in power.py",
                "max_power_w": _NV_H100 + ": up to 700 W",
                "host_bandwidth_bytes_per_s": "PCIe Gen5 x16: 64 GB/s per direction"}),
        GPU("h200", "NVIDIA H200 141GB HBM3e (SXM)", 989.4e12, 4.8e12, 150_109_880_320, 75.0,
            700.0, 64e9, {
                "peak_bf16_flops_per_s": _NV_H200 + ": 1,979 TFLOPS bf16 with sparsity / 2",
                "memory_bandwidth_bytes_per_s": _NV_H200 + ": 4.8 TB/s",
                "memory_bytes": _TORCH_TOTAL + " on our H200 (profiles/h200/provenance.json; "
                "nvidia-smi: 143771 MiB)",
                "idle_power_w": _TYPICAL_IDLE,
                "max_power_w": _NV_H200 + ": up to 700 W",
                "host_bandwidth_bytes_per_s": "PCIe Gen5 x16: 64 GB/s per direction"}),
        GPU("a100", "NVIDIA A100 80GB (SXM4)", 312e12, 2.039e12, 81920 * _MIB, 50.0, 400.0,
            32e9, {
                "peak_bf16_flops_per_s": _NV_A100 + ": 312 TFLOPS bf16 dense",
                "memory_bandwidth_bytes_per_s": _NV_A100 + ": 2,039 GB/s",
                "memory_bytes": _NV_A100 + ": 80 GB HBM2e",
                "idle_power_w": _TYPICAL_IDLE,
                "max_power_w": _NV_A100 + ": 400 W",
                "host_bandwidth_bytes_per_s": "PCIe Gen4 x16: 32 GB/s per direction"}),
        GPU("rtx4090", "NVIDIA GeForce RTX 4090", 165.2e12, 1.008e12, 25_250_627_584, 20.0,
            450.0, 32e9, {
                "peak_bf16_flops_per_s": _NV_ADA + ": 165.2 TFLOPS FP16/BF16 tensor, FP32 acc",
                "memory_bandwidth_bytes_per_s": _NV_ADA + ": 1,008 GB/s",
                "memory_bytes": _TORCH_TOTAL + " in the vLLM 0.19 RTX 4090 run's vllm_meta.json "
                "(device_total_memory_bytes; nvidia-smi: 24564 MiB)",
                "idle_power_w": _TYPICAL_IDLE,
                "max_power_w": _NV_ADA + ": 450 W TGP",
                "host_bandwidth_bytes_per_s": "PCIe Gen4 x16: 32 GB/s per direction"}),
        GPU("rtxpro6000", "NVIDIA RTX PRO 6000 Blackwell Server Edition", 500e12, 1.597e12,
            97_887 * _MIB, 30.0, 600.0, 64e9, {
                "peak_bf16_flops_per_s": _NV_PRO + ": 4,000 AI TOPS (FP4, sparse) -> 500 TFLOPS "
                "dense FP16/BF16 (derived: /2 sparsity, /4 FP4->FP16)",
                "memory_bandwidth_bytes_per_s": "LLMServingSim RTXPRO6000 cluster config "
                "(mem_bw 1597 GB/s, Server Edition)",
                "memory_bytes": "96 GB GDDR7; 97887 MiB is the typical nvidia-smi figure "
                "(assumed: torch's total for this card is not published)",
                "idle_power_w": _TYPICAL_IDLE,
                "max_power_w": _NV_PRO + ": up to 600 W",
                "host_bandwidth_bytes_per_s": "PCIe Gen5 x16: 64 GB/s per direction"}),
        GPU("rtx4060ti", "NVIDIA GeForce RTX 4060 Ti 16GB", 22.06e12, 288e9, 16380 * _MIB, 7.0,
            165.0, 16e9, {
                "peak_bf16_flops_per_s": _NV_ADA + ": 22.06 TFLOPS FP16 tensor, FP32 acc "
                "(44.1 with FP16 acc)",
                "memory_bandwidth_bytes_per_s": "NVIDIA RTX 4060 Ti spec page: 288 GB/s",
                "memory_bytes": "NVIDIA spec page: 16 GB variant assumed (SLICE does not say)",
                "idle_power_w": _TYPICAL_IDLE,
                "max_power_w": "NVIDIA spec page: 165 W (16 GB) total graphics power",
                "host_bandwidth_bytes_per_s": "PCIe Gen4 x8: 16 GB/s per direction"}),
        GPU("jetson-orin", "NVIDIA Jetson AGX Orin 64GB", 42.5e12, 204.8e9, 64 * 2**30, 15.0,
            60.0, 204.8e9, {
                "peak_bf16_flops_per_s": _NV_ORIN + ": 170 sparse INT8 TOPS -> 85 dense INT8 "
                "-> ~42.5 dense FP16 (derived, simulators.md B.8)",
                "memory_bandwidth_bytes_per_s": _NV_ORIN + ": 204.8 GB/s LPDDR5",
                "memory_bytes": _NV_ORIN + ": 64 GB unified (shared with the CPU)",
                "idle_power_w": _NV_ORIN + ": 15 W lowest power mode",
                "max_power_w": _NV_ORIN + ": 60 W max power mode",
                "host_bandwidth_bytes_per_s": "unified memory: swap = DRAM copy at 204.8 GB/s"}),
    )
}


def get_gpu(key: str) -> GPU:
    """Look up a GPU; unknown keys raise ``ValueError`` listing the valid ones."""
    try:
        return GPUS[key.lower()]
    except KeyError:
        raise ValueError(f"unknown GPU {key!r}; known: {sorted(GPUS)}") from None
