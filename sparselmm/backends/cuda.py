"""The device primitives of ``backends.gpu`` on an NVIDIA GPU, through CuPy (the ``[gpu]`` extra).

cuSOLVER's ``potrf`` factors S in place; S⁻¹ comes from cuSOLVER's
``potri`` (reached through ctypes in the library CuPy loaded: CuPy does not
wrap it) or, where that is missing, from a triangular solve of the identity
and one product; the solves are cuBLAS ``trsm`` (``cupyx``). The two passes
over the pairs of rows of L21 are the kernels of ``blocked_pairs.cu``.
Nothing here is imported by ``import sparselmm`` or by a CPU fit.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

import numpy as np

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


@lru_cache(maxsize=1)
def _potri():
    """cuSOLVER's ``cusolverDnDpotri_bufferSize`` and ``cusolverDnDpotri`` from the library CuPy
    loaded (found in the process's mappings), or None."""
    try:
        with open("/proc/self/maps") as fh:
            path = next((line.split()[-1] for line in fh if "libcusolver.so" in line), None)
        if path is None:
            return None
        lib = ctypes.CDLL(path)
        size, potri = lib.cusolverDnDpotri_bufferSize, lib.cusolverDnDpotri
    except (OSError, AttributeError):
        return None
    vp, i = ctypes.c_void_p, ctypes.c_int
    size.argtypes, size.restype = [vp, i, i, vp, i, ctypes.POINTER(i)], i
    potri.argtypes, potri.restype = [vp, i, i, vp, i, vp, i, vp], i
    return size, potri


class CudaOps:
    """``backends.gpu.NumpyOps``'s primitives on the current CUDA device."""

    name = "cuda"

    def __init__(self):
        cupy = require_cupy()
        from cupy_backends.cuda.libs import cusolver

        self.xp, self._cusolver = cupy, cusolver
        source = (Path(__file__).with_name("blocked_pairs.cu")).read_text()
        module = cupy.RawModule(code=source)
        self._schur, self._gram = module.get_function("schur_pairs"), module.get_function("gram_pairs")
        device = cupy.cuda.Device()
        self._max_blocks = _BLOCKS_PER_SM * int(device.attributes["MultiProcessorCount"])
        self.device_name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"].decode()

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

    def _handle(self) -> int:
        return self.xp.cuda.device.get_cusolver_handle()

    def _check(self, routine: str, info) -> None:
        value = int(info.get()[0])
        if value:
            raise np.linalg.LinAlgError(f"{routine} failed with info={value}")

    def potrf(self, S) -> None:
        n = S.shape[0]
        if n == 0:
            return
        cs, handle = self._cusolver, self._handle()
        lwork = cs.dpotrf_bufferSize(handle, _LOWER, n, S.data.ptr, n)
        work, info = self.xp.empty(max(lwork, 1)), self.xp.zeros(1, dtype=np.int32)
        cs.dpotrf(handle, _LOWER, n, S.data.ptr, n, work.data.ptr, lwork, info.data.ptr)
        self._check("cusolverDnDpotrf", info)

    def potri(self, L, out) -> None:
        n = L.shape[0]
        if n == 0:
            return
        out[...] = L
        routines = _potri()
        if routines is None:  # L⁻¹ by a triangular solve of I, then L⁻ᵀL⁻¹ (one more m × m array)
            from cupyx.scipy.linalg import solve_triangular

            out[...] = self.xp.eye(n)
            X = solve_triangular(L, out, lower=True, overwrite_b=True)
            out[...] = X.T @ X
            return
        size, potri = routines
        handle, lwork = self._handle(), ctypes.c_int(0)
        if size(handle, _LOWER, n, out.data.ptr, n, ctypes.byref(lwork)):
            raise RuntimeError("cusolverDnDpotri_bufferSize failed")
        work, info = self.xp.empty(max(lwork.value, 1)), self.xp.zeros(1, dtype=np.int32)
        if potri(handle, _LOWER, n, out.data.ptr, n, work.data.ptr, lwork.value, info.data.ptr):
            raise RuntimeError("cusolverDnDpotri failed")
        self._check("cusolverDnDpotri", info)

    def solve(self, L, B, trans: bool = False):
        from cupyx.scipy.linalg import solve_triangular

        return solve_triangular(L, B, lower=True, trans="T" if trans else "N", overwrite_b=True)
