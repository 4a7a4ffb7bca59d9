"""LAPACK from the system library CHOLMOD runs on, and the BLAS thread policy of a fit.

numpy and scipy bring their own OpenBLAS. Calling it between two CHOLMOD
factorizations (which run on the system's BLAS) leaves two thread pools
spinning on the same cores: on two cores the next factorization took twice
as long. So the trailing-block inverse calls the system's ``dpotri``
directly (through ctypes), and falls back to scipy's where the system
library cannot be found.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from contextlib import contextmanager

import numpy as np
from scipy.linalg.lapack import dpotri as _scipy_dpotri
from threadpoolctl import threadpool_limits


def _load():
    for name in ("liblapack.so.3", ctypes.util.find_library("lapack")):
        if not name:
            continue
        try:
            fn = ctypes.CDLL(name).dpotri_
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_void_p,
                       ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
        fn.restype = None
        return fn
    return None


_DPOTRI = _load()


@contextmanager
def single_threaded_blas():
    """Run every BLAS in the process (numpy's, scipy's, CHOLMOD's) on one thread inside the block.

    A fit alternates CHOLMOD factorizations, Numba kernels and small numpy
    products; BLAS threads left spinning after each call then compete with
    the next one for the same cores. Measured on two cores (min of 3 fits):
    InstEval 2.2 s → 1.6 s, crossed 10⁵ rows 1.7 s → 1.3 s, nested 10⁵ rows
    0.23 s → 0.07 s, although a lone CHOLMOD factorization is faster with two
    threads (30 ms against 40 ms).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def cholesky_inverse_lower(L: np.ndarray) -> np.ndarray:
    """(L L')⁻¹ from a lower Cholesky factor, in place; only the lower triangle is valid.

    ``L`` must be a Fortran-ordered float64 square array (it is overwritten).
    """
    if L.shape[0] == 0:
        return L
    if _DPOTRI is None or not L.flags.f_contiguous or L.dtype != np.float64:
        out, info = _scipy_dpotri(L, lower=1, overwrite_c=1)
    else:
        n, info_c = ctypes.c_int(L.shape[0]), ctypes.c_int(0)
        _DPOTRI(b"L", ctypes.byref(n), L.ctypes.data, ctypes.byref(n), ctypes.byref(info_c))
        out, info = L, info_c.value
    if info:
        raise np.linalg.LinAlgError(f"dpotri failed with info={info}")
    return out
