"""C-level numpy reductions for the simulator's hot paths.

``ndarray.sum()`` and friends go through a Python wrapper, which is measurable per call at
tens of thousands of iterations per second.
"""

from __future__ import annotations

import numpy as np

__all__ = ["all_", "max_", "min_", "nz", "sum_"]

sum_ = np.add.reduce
min_ = np.minimum.reduce
max_ = np.maximum.reduce
try:  # the C function behind np.count_nonzero (skips its Python wrapper)
    from numpy._core._multiarray_umath import count_nonzero as nz
except ImportError:  # pragma: no cover - other numpy layouts
    nz = np.count_nonzero


def all_(x: np.ndarray) -> bool:
    """Whether every element of ``x`` is true."""
    return bool(np.count_nonzero(x) == x.size)
