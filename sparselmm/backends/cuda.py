"""The device primitives of ``backends.gpu`` on an NVIDIA GPU, through CuPy (the ``[gpu]`` extra).

cuSOLVER factors S in place (``Xpotrf``, its 64-bit API); S⁻¹ comes from
``potri`` below 2³¹ entries, else from the 64-bit ``Xtrtri`` into a third
m × m array and one cuBLAS ``syrk`` (cuSOLVER reached through ctypes in the
library CuPy loaded: CuPy wraps neither ``potri`` nor the 64-bit API); the
solves are cuBLAS ``trsm`` (``cupyx``). The two passes
over the pairs of rows of L21 are the kernels of ``blocked_pairs.cu``.
Nothing here is imported by ``import sparselmm`` or by a CPU fit.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

import numpy as np

from .gpu import LARGE_ENTRIES

#: cuBLAS's fill mode of the lower triangle (cublasFillMode_t).
_LOWER = 0

#: Threads a block of the pair kernels (eight warps); blocks a multiprocessor.
_BLOCK = 256
_BLOCKS_PER_SM = 8


def gpu_available() -> bool:
    """Whether CuPy imports and finds a CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: all mean the CPU
        return False


def require_cupy():
    """CuPy, or :class:`~sparselmm.errors.DeviceError` saying why not."""
    from ..errors import DeviceError

    try:
        import cupy
    except ImportError as err:
        raise DeviceError("device='cuda' needs CuPy (pip install 'sparselmm[gpu]', or cupy-cuda12x / "
                          f"cupy-cuda13x to match the CUDA driver): {err}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:
        raise DeviceError(f"device='cuda': CuPy finds no usable CUDA driver ({err})") from None
    if count == 0:
        raise DeviceError("device='cuda': CuPy finds no CUDA device")
    return cupy


#: cudaDataType's CUDA_R_64F and cublasDiagType_t's CUBLAS_DIAG_NON_UNIT.
_R_64F, _NON_UNIT = 1, 0


@lru_cache(maxsize=1)
def _cusolver_library():
    """The cuSOLVER library CuPy loaded (found in the process's mappings), through ctypes, or None:
    for ``potri`` (which CuPy does not wrap) and the 64-bit ``Xpotrf`` and ``Xtrtri``."""
    try:
        import cupy

        cupy.cuda.device.get_cusolver_handle()  # the library is mapped once a handle exists
        with open("/proc/self/maps") as fh:
            path = next((line.split()[-1] for line in fh if "libcusolver.so" in line), None)
        return None if path is None else ctypes.CDLL(path)
    except Exception:  # no CuPy or no device: nothing to call
        return None


def _routine(name: str, argtypes):
    """``name`` from :func:`_cusolver_library` with its argument types, or None."""
    lib = _cusolver_library()
    fn = getattr(lib, name, None) if lib is not None else None
    if fn is not None:
        fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn


_P, _I, _L, _S = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_size_t
_SIGNATURES = {
    "cusolverDnDpotri_bufferSize": [_P, _I, _I, _P, _I, ctypes.POINTER(_I)],
    "cusolverDnDpotri": [_P, _I, _I, _P, _I, _P, _I, _P],
    "cusolverDnCreateParams": [ctypes.POINTER(_P)],
    "cusolverDnXpotrf_bufferSize": [_P, _P, _I, _L, _I, _P, _L, _I, ctypes.POINTER(_S), ctypes.POINTER(_S)],
    "cusolverDnXpotrf": [_P, _P, _I, _L, _I, _P, _L, _I, _P, _S, _P, _S, _P],
    "cusolverDnXtrtri_bufferSize": [_P, _I, _I, _L, _I, _P, _L, ctypes.POINTER(_S), ctypes.POINTER(_S)],
    "cusolverDnXtrtri": [_P, _I, _I, _L, _I, _P, _L, _P, _S, _P, _S, _P],
}


def _call(name: str, *args) -> None:
    status = _routine(name, _SIGNATURES[name])(*args)
    if status:
        raise RuntimeError(f"{name} returned status {status}")


def has(name: str) -> bool:
    """Whether the loaded cuSOLVER has ``name``."""
    return _routine(name, _SIGNATURES[name]) is not None


class CudaOps:
    """``backends.gpu.NumpyOps``'s primitives on the current CUDA device."""

    name = "cuda"

    def __init__(self):
        cupy = require_cupy()
        try:
            from cupy_backends.cuda.libs import cusolver
        except ImportError:  # where older or newer CuPy keeps its thin wrapper
            from cupy.cuda import cusolver

        self.xp, self._cusolver = cupy, cusolver
        source = (Path(__file__).with_name("blocked_pairs.cu")).read_text()
        module = cupy.RawModule(code=source)
        self._schur, self._gram, self._inverse = (module.get_function(name) for name in
                                                  ("schur_pairs", "gram_pairs", "inverse_pairs"))
        device = cupy.cuda.Device()
        self._max_blocks = _BLOCKS_PER_SM * int(device.attributes["MultiProcessorCount"])
        self.device_name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"].decode()
        self._solver_params = self._scratch = None
        # the strict upper triangle of a column-major n × n array, flat: zero
        self._zero_upper = cupy.ElementwiseKernel("int64 n", "float64 x", "if (i % n < i / n) x = 0.0;",
                                                  "sparselmm_zero_upper")

    def to_device(self, a):
        return self.xp.asarray(np.ascontiguousarray(a))

    def to_host(self, a, out=None):
        if out is None:
            return a.get()
        a.get(out=out)
        return out

    def free_memory(self) -> float:
        free, _ = self.xp.cuda.runtime.memGetInfo()
        return float(free + self.xp.get_default_memory_pool().free_bytes())

    def square(self, m: int):
        cupy = self.xp
        if m == 0:  # one term only: no dense block (and no memory to point into)
            return cupy.empty((0, 0), order="F"), cupy.empty(0)
        flat = cupy.empty(m * m)
        square = cupy.ndarray((m, m), dtype=np.float64, memptr=flat.data, strides=(8, 8 * m))  # column-major view
        return square, flat

    def _launch(self, kernel, nx: int, args) -> None:
        if nx == 0:
            return
        blocks = min(-(-nx * 32 // _BLOCK), self._max_blocks)
        kernel((blocks,), (_BLOCK,), args)

    def schur_pairs(self, S_flat, index, q1: int, m: int) -> None:
        nx = len(index.rpos)
        self._launch(self._schur, nx, (index.lptr, index.lidx, index.lval, index.rpos, index.rcol, index.xrow,
                                       np.int64(nx), np.int64(q1), np.int64(m), S_flat))

    def gram_pairs(self, Sinv_flat, index, q1: int, m: int, w) -> float:
        nx = len(index.rpos)
        part = self.xp.zeros(nx)
        self._launch(self._gram, nx, (index.lptr, index.lidx, index.lval, index.rpos, index.rcol, index.xrow,
                                      np.int64(nx), np.int64(q1), np.int64(m), Sinv_flat, w, part))
        return float(part.sum())

    def inverse_pairs(self, Sinv_flat, index, q1: int, m: int, Y) -> None:
        nx = len(index.rpos)
        self._launch(self._inverse, nx, (index.lptr, index.lidx, index.lval, index.rpos, index.rcol, index.xrow,
                                         np.int64(nx), np.int64(q1), np.int64(m), Sinv_flat, Y))

    def _handle(self) -> int:
        return self.xp.cuda.device.get_cusolver_handle()

    def synchronize(self) -> None:
        self.xp.cuda.Device().synchronize()

    def upload(self, dst, host) -> None:
        """Host values into the device array ``dst`` (same size), without a temporary there."""
        dst.set(np.ascontiguousarray(host, dtype=dst.dtype).reshape(dst.shape))

    def _check(self, routine: str, info) -> None:
        value = int(info.get()[0])
        if value:
            raise np.linalg.LinAlgError(f"{routine} failed with info={value}")

    def potrf(self, S) -> None:
        """S's Cholesky factor in its lower triangle, in place: the 64-bit ``cusolverDnXpotrf`` where
        the library has it (the one for matrices of 2³¹ entries or more), else CuPy's ``dpotrf``."""
        n = S.shape[0]
        if n == 0:
            return
        info = self.xp.zeros(1, dtype=np.int32)
        if has("cusolverDnXpotrf"):
            params, dev, host = self._params(), _S(0), _S(0)
            _call("cusolverDnXpotrf_bufferSize", self._handle(), params, _LOWER, n, _R_64F, S.data.ptr, n, _R_64F,
                  ctypes.byref(dev), ctypes.byref(host))
            work, hwork = self.xp.empty(max(dev.value, 1), dtype=np.uint8), np.empty(max(host.value, 1), np.uint8)
            _call("cusolverDnXpotrf", self._handle(), params, _LOWER, n, _R_64F, S.data.ptr, n, _R_64F,
                  work.data.ptr, dev.value, hwork.ctypes.data, host.value, info.data.ptr)
        else:
            cs, handle = self._cusolver, self._handle()
            lwork = cs.dpotrf_bufferSize(handle, _LOWER, n, S.data.ptr, n)
            work = self.xp.empty(max(lwork, 1))
            cs.dpotrf(handle, _LOWER, n, S.data.ptr, n, work.data.ptr, lwork, info.data.ptr)
        self._check("potrf", info)

    def _params(self):
        if self._solver_params is None:
            params = _P()
            _call("cusolverDnCreateParams", ctypes.byref(params))
            self._solver_params = params
        return self._solver_params

    def potri(self, L, out, via: str | None = None) -> None:
        """S⁻¹'s lower triangle into ``out`` from S's factor L: cuSOLVER's ``potri`` in place (below
        :data:`LARGE_ENTRIES`), else L⁻¹ by the 64-bit ``Xtrtri`` into a third m × m array (kept)
        and S⁻¹ = L⁻ᵀL⁻¹ by one ``syrk``; without either, a triangular solve of I. ``via``
        ("potri" or "trtri") forces a way (tests)."""
        n = L.shape[0]
        if n == 0:
            return
        info = self.xp.zeros(1, dtype=np.int32)
        if via is None:
            via = "potri" if n * n < LARGE_ENTRIES and has("cusolverDnDpotri") else "trtri"
        if via == "potri":
            out[...] = L
            lwork = _I(0)
            _call("cusolverDnDpotri_bufferSize", self._handle(), _LOWER, n, out.data.ptr, n, ctypes.byref(lwork))
            work = self.xp.empty(max(lwork.value, 1))
            _call("cusolverDnDpotri", self._handle(), _LOWER, n, out.data.ptr, n, work.data.ptr, lwork.value,
                  info.data.ptr)
            self._check("potri", info)
            return
        if self._scratch is None or self._scratch[0].shape[0] != n:
            self._scratch = self.square(n)
        X, X_flat = self._scratch
        X[...] = L
        self._zero_upper(np.int64(n), X_flat)  # syrk reads all of X
        if has("cusolverDnXtrtri"):
            dev, host = _S(0), _S(0)
            _call("cusolverDnXtrtri_bufferSize", self._handle(), _LOWER, _NON_UNIT, n, _R_64F, X.data.ptr, n,
                  ctypes.byref(dev), ctypes.byref(host))
            work, hwork = self.xp.empty(max(dev.value, 1), dtype=np.uint8), np.empty(max(host.value, 1), np.uint8)
            _call("cusolverDnXtrtri", self._handle(), _LOWER, _NON_UNIT, n, _R_64F, X.data.ptr, n, work.data.ptr,
                  dev.value, hwork.ctypes.data, host.value, info.data.ptr)
            self._check("trtri", info)
        else:
            from cupyx.scipy.linalg import solve_triangular

            X[...] = self.xp.eye(n)
            solve_triangular(L, X, lower=True, overwrite_b=True)
        from cupy import cublas

        cublas.syrk("T", X, out=out, alpha=1.0, beta=0.0, lower=True)

    def solve(self, L, B, trans: bool = False):
        from cupyx.scipy.linalg import solve_triangular

        return solve_triangular(L, B, lower=True, trans="T" if trans else "N", overwrite_b=True)
