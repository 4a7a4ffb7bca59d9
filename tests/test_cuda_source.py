"""The CUDA kernels of ``backends/blocked_pairs.cu`` run as C++ on the CPU, one thread after another.

Their lanes share only atomic additions and one warp sum, so a serial run of every (block, thread)
computes what the GPU does, up to the order of the additions: here the kernels' index logic (the
pairs of rows, the grid-stride loop over warps, the flat offsets into S) is checked against a dense
oracle and against ``NumpyOps`` on every machine with a C++ compiler, GPU or not.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sparselmm.backends.gpu import DeviceBlockedBackend, NumpyOps
from sparselmm.datasets import simulate_ratings
from sparselmm.model import LinearMixedModel

import sparselmm.backends as backends

SOURCE = Path(backends.__file__).with_name("blocked_pairs.cu")

HARNESS = r"""
struct Dim { unsigned x; };
static Dim blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define atomicAdd(p, v) (*(p) += (v))
#define ADD_LANES(dst, v, lane) (*(dst) += (v))
#define ATOMIC_ADD_LANES(dst, v, lane) (*(dst) += (v))
#include "blocked_pairs.cu"

template <typename Body> static void launch(unsigned grid, unsigned block, Body body)
{
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = 0; b < grid; ++b)
        for (unsigned t = 0; t < block; ++t) {
            blockIdx.x = b;
            threadIdx.x = t;
            body();
        }
}

extern "C" void run_schur(unsigned grid, unsigned block, const long long *lptr, const int *lidx,
                          const double *lval, const int *rpos, const int *rcol, const int *xrow,
                          long long nx, long long q1, long long m, double *S)
{
    launch(grid, block, [&] { schur_pairs(lptr, lidx, lval, rpos, rcol, xrow, nx, q1, m, S); });
}

extern "C" void run_gram(unsigned grid, unsigned block, const long long *lptr, const int *lidx,
                         const double *lval, const int *rpos, const int *rcol, const int *xrow,
                         long long nx, long long q1, long long m, const double *Sinv, const double *w,
                         double *part)
{
    launch(grid, block, [&] { gram_pairs(lptr, lidx, lval, rpos, rcol, xrow, nx, q1, m, Sinv, w, part); });
}

extern "C" void run_inverse(unsigned grid, unsigned block, const long long *lptr, const int *lidx,
                            const double *lval, const int *rpos, const int *rcol, const int *xrow,
                            long long nx, long long q1, long long m, const double *Sinv, double *Y)
{
    launch(grid, block, [&] { inverse_pairs(lptr, lidx, lval, rpos, rcol, xrow, nx, q1, m, Sinv, Y); });
}
"""


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    tmp = tmp_path_factory.mktemp("cuda_source")
    (tmp / "harness.cpp").write_text(HARNESS)
    lib = tmp / "harness.so"
    subprocess.run([compiler, "-std=c++14", "-O1", "-shared", "-fPIC", f"-I{SOURCE.parent}", "harness.cpp",
                    "-o", str(lib)], cwd=tmp, check=True, capture_output=True)
    harness = ctypes.CDLL(str(lib))
    P, I, L = ctypes.c_void_p, ctypes.c_uint, ctypes.c_longlong
    harness.run_schur.argtypes = [I, I, P, P, P, P, P, P, L, L, L, P]
    harness.run_gram.argtypes = [I, I, P, P, P, P, P, P, L, L, L, P, P, P]
    harness.run_inverse.argtypes = [I, I, P, P, P, P, P, P, L, L, L, P, P]
    return harness


@pytest.fixture(scope="module")
def backend():
    """A crossed design whose L21 columns have 1 to ~60 rows (more than a warp's 32 lanes)."""
    data = simulate_ratings(4000, 120, 90, seed=3)
    model = LinearMixedModel("rating ~ 1 + (1|user) + (1|item)", data, reml=False, backend="blocked")
    dev = DeviceBlockedBackend(model.layout, model.crossprod, False, ops=NumpyOps())
    dev.objective(np.array([0.7, 0.4]))  # fills L11, L21 and the device's index
    return dev


def _ptr(a, dtype):
    assert a.dtype == dtype and (a.flags.c_contiguous or a.flags.f_contiguous)
    return a.ctypes.data


def _args(index):
    return (_ptr(index.lptr, np.int64), _ptr(index.lidx, np.int32), _ptr(index.lval, np.float64),
            _ptr(index.rpos, np.int32), _ptr(index.rcol, np.int32), _ptr(index.xrow, np.int32))


def _problem(dev):
    """The backend, its device index, q1, m, L21's entries and L21 (m × q1) dense from L's first columns."""
    q1, m = dev._q1, dev._m
    L21 = np.zeros((m, q1))
    for c in range(q1):
        for k in range(dev._lptr[c], dev._lptr[c + 1]):
            if dev._lidx[k] >= q1:
                L21[dev._lidx[k] - q1, c] = dev._lval[k]
    return dev, dev._index, q1, m, len(dev._index.rpos), L21


def _inverse_lower(m, seed):
    """A symmetric positive definite S⁻¹, and a column-major array holding it below the diagonal
    and garbage above (the kernels read the lower triangle alone)."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((m, m))
    Sinv = G @ G.T + m * np.eye(m)
    return Sinv, np.asfortranarray(np.tril(Sinv) + np.triu(rng.standard_normal((m, m)), 1))


@pytest.mark.parametrize("grid,block", [(1, 32), (3, 64), (40, 256)])
def test_schur_pairs_emulated(emulated, backend, grid, block):
    """S − L21 L21' (lower triangle) from the kernel, for grids smaller and larger than the entries."""
    dev, index, q1, m, nx, L21 = _problem(backend)
    start = np.random.default_rng(0).standard_normal((m, m))
    S = np.asfortranarray(start.copy())
    emulated.run_schur(grid, block, *_args(index), nx, q1, m, _ptr(S, np.float64))
    want = start - L21 @ L21.T
    low = np.tril_indices(m)
    np.testing.assert_allclose(S[low], want[low], rtol=0, atol=1e-12)
    assert np.array_equal(np.triu(S, 1), np.triu(start, 1))  # the upper triangle untouched
    ref = np.asfortranarray(start.copy())
    NumpyOps().schur_pairs(ref.reshape(-1, order="F"), index, q1, m)
    np.testing.assert_allclose(S[low], ref[low], rtol=0, atol=1e-12)


@pytest.mark.parametrize("grid,block", [(1, 32), (5, 128)])
def test_gram_pairs_emulated(emulated, backend, grid, block):
    """Σ_c w_c l_c' S⁻¹ l_c from S⁻¹'s lower triangle alone."""
    dev, index, q1, m, nx, L21 = _problem(backend)
    Sinv, lower = _inverse_lower(m, 1)
    w = np.random.default_rng(1).uniform(0.5, 2.0, q1)
    want = np.einsum("c,rc,rs,sc->", w, L21, Sinv, L21)
    part = np.zeros(nx)
    emulated.run_gram(grid, block, *_args(index), nx, q1, m, _ptr(lower, np.float64),
                      _ptr(w, np.float64), _ptr(part, np.float64))
    assert part.sum() == pytest.approx(want, rel=1e-12)
    ref = NumpyOps().gram_pairs(lower.reshape(-1, order="F"), index, q1, m, w)
    assert ref == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("grid,block", [(1, 32), (7, 96)])
def test_inverse_pairs_emulated(emulated, backend, grid, block):
    """Y = S⁻¹[R, R] l_c on every column's rows, from S⁻¹'s lower triangle alone."""
    dev, index, q1, m, nx, L21 = _problem(backend)
    Sinv, lower = _inverse_lower(m, 2)
    Y = np.zeros(len(index.lval))
    emulated.run_inverse(grid, block, *_args(index), nx, q1, m, _ptr(lower, np.float64), _ptr(Y, np.float64))
    want = Sinv @ L21  # column c: S⁻¹ l_c, read at the rows of c
    for c in range(q1):
        for k in range(dev._lptr[c], dev._lptr[c + 1]):
            if dev._lidx[k] >= q1:
                assert Y[k] == pytest.approx(want[dev._lidx[k] - q1, c], rel=1e-12, abs=1e-12)
            else:
                assert Y[k] == 0.0
    ref = np.zeros(len(index.lval))
    NumpyOps().inverse_pairs(lower.reshape(-1, order="F"), index, q1, m, ref)
    np.testing.assert_allclose(ref, Y, rtol=1e-12, atol=1e-12)
