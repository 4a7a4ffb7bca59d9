"""What every kernel module shares: look-ups, a counting sort, and the variants of parallel kernels."""

from __future__ import annotations

import types

import numba as nb
import numpy as np

from . import variant_name


@nb.njit(cache=True, inline="always")
def _find(indices, start, stop, row):
    """Position of ``row`` in the sorted ``indices[start:stop]`` (or -1)."""
    lo, hi = start, stop
    while lo < hi:
        mid = (lo + hi) // 2
        if indices[mid] < row:
            lo = mid + 1
        else:
            hi = mid
    if lo < stop and indices[lo] == row:
        return lo
    return -1


@nb.njit(cache=True)
def counting_order(keys, nkeys):
    """The stable sort order of integer ``keys`` in ``0 .. nkeys - 1`` (a counting sort, O(n))."""
    start = np.zeros(nkeys + 1, dtype=np.int64)
    for k in keys:
        start[k + 1] += 1
    for k in range(nkeys):
        start[k + 1] += start[k]
    order = np.empty(len(keys), dtype=np.int64)
    for i in range(len(keys)):
        order[start[keys[i]]] = i
        start[keys[i]] += 1
    return order


#: A kernel's compile-time group size: 0 (read from the data) in the kernels as written; a
#: specialization (``kernels.pick`` with ``size``) sees another value, so that its loops over a
#: group have constant trip counts the compiler unrolls (3x on the 2 × 2 blocks of a
#: random intercept and slope).
QFIX = 0

def _variant(kernel, parallel: bool, size: int):
    """``kernel`` compiled with or without ``parallel`` (``prange`` then runs as ``range``) and with
    the global ``QFIX = size``: each combination is its own function, with its own cache entry."""
    py = kernel.py_func
    name = variant_name(py.__name__, parallel, size)
    scope = py.__globals__ if not size else dict(py.__globals__, QFIX=size)
    f = types.FunctionType(py.__code__, scope, name, py.__defaults__, py.__closure__)
    f.__qualname__ = py.__qualname__[: -len(py.__name__)] + name
    f.__doc__ = py.__doc__
    return nb.njit(cache=True, parallel=parallel)(f)


_VARIANTS: dict = {}


def variant(kernel, parallel: bool, size: int):
    """The kernel itself where ``parallel`` and no ``size``, else its (cached) :func:`_variant`
    (``kernels.pick`` decides which)."""
    if parallel and not size:
        return kernel
    key = (kernel, parallel, size)
    if key not in _VARIANTS:
        _VARIANTS[key] = _variant(kernel, parallel, size)
    return _VARIANTS[key]
