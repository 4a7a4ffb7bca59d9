"""LAPACK from the system library CHOLMOD runs on, and the BLAS thread policy of a fit.

numpy and scipy bring their own OpenBLAS. Calling it between two CHOLMOD
factorizations (which run on the system's BLAS) leaves two thread pools
spinning on the same cores: on two cores the next factorization took twice
as long. So the trailing-block inverse calls the system's ``dpotri``
directly (through ctypes), as does the blocked backend for its dense block
(``dpotrf``, ``dpotri``); scipy's serve where the system library cannot be
found.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
from scipy.linalg import solve_triangular
from scipy.linalg.lapack import dpotrf as _scipy_dpotrf
from scipy.linalg.lapack import dpotri as _scipy_dpotri
from threadpoolctl import ThreadpoolController


_INT = ctypes.POINTER(ctypes.c_int)
_CHAR = ctypes.c_char_p
#: Fortran signatures: (uplo, n, a, lda, info) and dtrtrs's (uplo, trans, diag, n, nrhs, a, lda, b, ldb, info).
_SIGNATURES = {"dpotrf_": [_CHAR, _INT, ctypes.c_void_p, _INT, _INT],
               "dpotri_": [_CHAR, _INT, ctypes.c_void_p, _INT, _INT],
               "dtrtrs_": [_CHAR, _CHAR, _CHAR, _INT, _INT, ctypes.c_void_p, _INT, ctypes.c_void_p, _INT, _INT],
               "dtrttf_": [_CHAR, _CHAR, _INT, ctypes.c_void_p, _INT, ctypes.c_void_p, _INT],
               "dpftri_": [_CHAR, _CHAR, _INT, ctypes.c_void_p, _INT]}


def _symbol(name: str):
    """``name`` from the system LAPACK library (or a library it links, as OpenBLAS), or None."""
    for lib in ("liblapack.so.3", ctypes.util.find_library("lapack")):
        if not lib:
            continue
        try:
            return getattr(ctypes.CDLL(lib), name)
        except (OSError, AttributeError):
            continue
    return None


def _load(name: str):
    """The system LAPACK routine ``name`` with its Fortran signature, or None."""
    fn = _symbol(name)
    if fn is not None:
        fn.argtypes = _SIGNATURES[name]
        fn.restype = None
    return fn


@lru_cache(maxsize=1)
def _system() -> dict:
    """The system routines, loaded on first use (not by ``import sparselmm``)."""
    return {name: _load(name + "_") for name in ("dpotrf", "dpotri", "dtrtrs", "dtrttf", "dpftri")}


@lru_cache(maxsize=1)
def _threads():
    """OpenBLAS's get/set of its thread count, from the system library, or None."""
    get, set_ = _symbol("openblas_get_num_threads"), _symbol("openblas_set_num_threads")
    return (get, set_) if _system()["dpotrf"] is not None and get is not None and set_ is not None else None


def _system_path(blas: list[dict]) -> str | None:
    """File of the system OpenBLAS as threadpoolctl names it (the library ``openblas_set_num_threads`` acts on)."""
    if _threads() is None:
        return None
    for info in blas:
        if info["internal_api"] == "openblas" and "scipy_openblas" not in info["filepath"]:
            return info["filepath"]
    return None


@lru_cache(maxsize=1)
def _other_blas() -> ThreadpoolController:
    """numpy's and scipy's own BLAS: every BLAS in the process but the system's.

    threadpoolctl finds them by scanning the process's libraries (~3 ms);
    done once, on first use, when numpy and scipy are loaded.
    """
    controller = ThreadpoolController()
    blas = [info for info in controller.info() if info["user_api"] == "blas"]
    system = _system_path(blas)
    return controller.select(filepath=[info["filepath"] for info in blas if info["filepath"] != system])


_SCIPY = {"dpotrf": lambda a, lower: _scipy_dpotrf(a, lower=lower, overwrite_a=1, clean=0),
          "dpotri": lambda a, lower: _scipy_dpotri(a, lower=lower, overwrite_c=1)}


@contextmanager
def other_blas_single_threaded():
    """numpy's and scipy's own BLAS on one thread inside the block.

    Their calls in a model's setup and fit are small (n × p products, p × p
    factors), and a pool left spinning after one slows the system BLAS's next
    call: InstEval's first dense factor took 60–100 ms after the model frame's
    QR instead of 6 ms.
    """
    with _other_blas().limit(limits=1):
        yield


@contextmanager
def fit_blas_threads(system_threads: int | None = 1):
    """The BLAS thread policy of a fit: numpy's and scipy's BLAS on one thread, the system's on ``system_threads``.

    A fit alternates factorizations, Numba kernels and small numpy products;
    BLAS threads left spinning after each call compete with the next one for
    the same cores. Measured on two cores (min of 3 fits, CHOLMOD backend):
    InstEval 2.2 s → 1.6 s, crossed 10⁵ rows 1.7 s → 1.3 s, nested 10⁵ rows
    0.23 s → 0.07 s with every BLAS on one thread. The blocked backend's time
    is the system LAPACK's dense factor and inverse: it asks for every core
    (``None``) for the whole fit — switching the count around each call cost
    more than the threads gave (InstEval's dpotrf: 5.9 ms on two threads,
    9.3 ms on one, 9.9 ms when switched from one to two before each call).
    """
    with other_blas_single_threaded():
        if _threads() is None:
            yield
            return
        get, set_ = _threads()
        before = get()
        wanted = system_threads or os.cpu_count() or 1
        if before != wanted:
            set_(wanted)
        try:
            yield
        finally:
            if before != wanted:
                set_(before)


def _in_place(routine: str, a: np.ndarray, lower: bool) -> None:
    """Call LAPACK's ``routine`` on the Fortran-ordered float64 array ``a``, in place."""
    if a.shape[0] == 0:
        return
    if not (a.flags.f_contiguous and a.dtype == np.float64):
        raise ValueError(f"{routine} works in place on a Fortran-ordered float64 array")
    _in_place_call(_system()[routine], routine, a, lower)


def _in_place_call(fn, routine, a, lower):
    if fn is None:
        out, info = _SCIPY[routine](a, int(lower))
        if out is not a:
            a[...] = out
    else:
        n, info_c = ctypes.c_int(a.shape[0]), ctypes.c_int(0)
        fn(b"L" if lower else b"U", ctypes.byref(n), a.ctypes.data, ctypes.byref(n), ctypes.byref(info_c))
        info = info_c.value
    if info:
        raise np.linalg.LinAlgError(f"{routine} failed with info={info}")


def cholesky(a: np.ndarray, lower: bool = True) -> np.ndarray:
    """The Cholesky factor of ``a`` in place (``dpotrf``); only the ``lower`` (or upper) triangle is read and valid.

    ``a`` must be a Fortran-ordered float64 square array.
    """
    _in_place("dpotrf", a, lower)
    return a


def cholesky_inverse(a: np.ndarray, lower: bool = True) -> np.ndarray:
    """(L L')⁻¹ (or (U'U)⁻¹) from a Cholesky factor held in ``a``, in place (``dpotri``); one triangle is valid.

    ``a`` must be a Fortran-ordered float64 square array.
    """
    _in_place("dpotri", a, lower)
    return a


def packed_cholesky_inverse(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """(L L')⁻¹ from the Cholesky factor L in the lower triangle of ``a`` (Fortran-ordered float64, n × n),
    into ``out`` (n(n + 1)/2 float64) in LAPACK's rectangular full packed format (TRANSR = 'N', UPLO = 'L'):
    ``dtrttf`` copies the triangle, ``dpftri`` inverts it in place, at ``dpotri``'s speed in half the memory.
    """
    n = a.shape[0]
    if not (a.flags.f_contiguous and a.dtype == np.float64 and out.dtype == np.float64
            and out.flags.c_contiguous and out.size == n * (n + 1) // 2):
        raise ValueError("packed_cholesky_inverse: a Fortran-ordered n × n float64 array and n(n + 1)/2 float64")
    if n == 0:
        return out
    routines = _system()
    if routines["dtrttf"] is None or routines["dpftri"] is None:
        from scipy.linalg.lapack import dpftri, dtrttf

        arf, info = dtrttf(a, transr="N", uplo="L")
        if info == 0:
            arf, info = dpftri(n, arf, transr="N", uplo="L", overwrite_a=1)
        if info:
            raise np.linalg.LinAlgError(f"dpftri failed with info={info}")
        out[:] = arf
        return out
    size, info = ctypes.c_int(n), ctypes.c_int(0)
    routines["dtrttf"](b"N", b"L", ctypes.byref(size), a.ctypes.data, ctypes.byref(size), out.ctypes.data,
                       ctypes.byref(info))
    if info.value == 0:
        routines["dpftri"](b"N", b"L", ctypes.byref(size), out.ctypes.data, ctypes.byref(info))
    if info.value:
        raise np.linalg.LinAlgError(f"dpftri failed with info={info.value}")
    return out


def triangular_solve(a: np.ndarray, b: np.ndarray, lower: bool = True, trans: bool = False) -> np.ndarray:
    """a⁻¹ b (or a'⁻¹ b) for triangular ``a`` (Fortran-ordered float64), by the system's ``dtrtrs``.

    The same library as :func:`cholesky`, so a fit's dense algebra uses one
    BLAS thread pool; scipy's where the system library cannot be found.
    Returns a new array.
    """
    fn = _system()["dtrtrs"]
    if fn is None or not a.flags.f_contiguous or a.shape[0] == 0:
        return solve_triangular(a, b, lower=lower, trans="T" if trans else "N", check_finite=False)
    x = np.array(b, dtype=np.float64, order="F", ndmin=2 if b.ndim == 2 else 1)
    n, nrhs = ctypes.c_int(a.shape[0]), ctypes.c_int(1 if x.ndim == 1 else x.shape[1])
    info = ctypes.c_int(0)
    fn(b"L" if lower else b"U", b"T" if trans else b"N", b"N", ctypes.byref(n), ctypes.byref(nrhs), a.ctypes.data,
       ctypes.byref(n), x.ctypes.data, ctypes.byref(n), ctypes.byref(info))
    if info.value:
        raise np.linalg.LinAlgError(f"dtrtrs failed with info={info.value}")
    return x
