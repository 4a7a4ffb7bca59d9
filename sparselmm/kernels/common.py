"""What every kernel module shares: look-ups, a counting sort, and the serial twins of parallel kernels."""

from __future__ import annotations

import types

import numba as nb
import numpy as np

#: Below this many independent pieces of work (groups, leading columns) a
#: parallel kernel runs its serial twin: waking a thread pool costs more
#: than small problems take (16 ms against 45 µs, seen on a loaded machine).
PARALLEL_MIN_WORK = 1000


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


def _serial_twin(kernel):
    """The same code compiled without ``parallel`` (``prange`` then runs as ``range``)."""
    py = kernel.py_func
    f = types.FunctionType(py.__code__, py.__globals__, py.__name__ + "_serial", py.__defaults__, py.__closure__)
    f.__qualname__ = py.__qualname__ + "_serial"  # its own cache entry
    f.__doc__ = py.__doc__
    return nb.njit(cache=True)(f)


_SERIAL: dict = {}


def with_serial_twins(*kernels) -> None:
    """Compile (lazily) a serial twin for each of these parallel kernels."""
    for k in kernels:
        _SERIAL[k] = _serial_twin(k)


def serial(kernel):
    """The serial twin of a parallel kernel."""
    return _SERIAL[kernel]


def pick(kernel, work: int):
    """``kernel`` itself for ``work`` ≥ PARALLEL_MIN_WORK pieces of work, else its serial twin."""
    return kernel if work >= PARALLEL_MIN_WORK else _SERIAL[kernel]
