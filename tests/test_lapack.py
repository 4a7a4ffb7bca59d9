"""The system-LAPACK wrappers against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from sparselmm import lapack


@pytest.mark.parametrize("n", [1, 7, 600])
def test_cholesky_inverse_and_triangular_solve(n):
    rng = np.random.default_rng(n)
    G = rng.normal(size=(n, n))
    A = G @ G.T + n * np.eye(n)
    L = lapack.cholesky(np.array(A, order="F"), lower=True)
    Lt = np.tril(L)
    np.testing.assert_allclose(Lt @ Lt.T, A, rtol=1e-12, atol=1e-10 * n)
    inv = lapack.cholesky_inverse(L.copy(order="F"), lower=True)
    np.testing.assert_allclose(np.tril(inv), np.tril(np.linalg.inv(A)), rtol=1e-9, atol=1e-13)
    b = rng.normal(size=(n, 3))
    np.testing.assert_allclose(Lt @ lapack.triangular_solve(L, b, lower=True), b, atol=1e-10)
    np.testing.assert_allclose(Lt.T @ lapack.triangular_solve(L, b[:, 0], lower=True, trans=True), b[:, 0],
                               atol=1e-10)


def test_not_positive_definite_raises():
    with pytest.raises(np.linalg.LinAlgError, match="dpotrf"):
        lapack.cholesky(np.array([[1.0, 2.0], [2.0, 1.0]], order="F"))
    with pytest.raises(ValueError, match="Fortran"):
        lapack.cholesky(np.eye(3)[:, ::2].copy(order="C")[:2])


@pytest.mark.parametrize(("name", "default", "given"), [("OMP_WAIT_POLICY", "PASSIVE", "ACTIVE"),
                                                    ("OPENBLAS_THREAD_TIMEOUT", "4", "28")])
def test_thread_wait_defaults_respect_the_user(name, default, given):
    import os
    import subprocess
    import sys

    for value, expected in ((None, default), (given, given)):
        env = {k: v for k, v in os.environ.items() if k != name}
        if value:
            env[name] = value
        out = subprocess.run([sys.executable, "-c", f"import os, sparselmm; print(os.environ['{name}'])"],
                             env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


def test_fit_blas_threads_sets_and_restores_the_system_count():
    if lapack._threads() is None:
        pytest.skip("no system OpenBLAS")
    get, _ = lapack._threads()
    before = get()
    with lapack.fit_blas_threads(1):
        assert get() == 1
    assert get() == before


def test_hugepage_advice_is_off_inside_and_restored():
    from sparselmm.memory import _set_hugepage_advice, without_hugepage_advice

    if _set_hugepage_advice is None:
        pytest.skip("this numpy has no hugepage switch")
    before = _set_hugepage_advice(True)
    try:
        with without_hugepage_advice():
            assert _set_hugepage_advice(False) is False  # it was off inside (and stays off)
        assert _set_hugepage_advice(True) is True  # restored on the way out
        with pytest.raises(RuntimeError), without_hugepage_advice():
            raise RuntimeError
        assert _set_hugepage_advice(True) is True  # restored after an error too
    finally:
        _set_hugepage_advice(before)
