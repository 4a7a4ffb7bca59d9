"""Standing test: the backends fit the same model, so agree to 1e-10.

Random nested designs (hypothesis): groups of random sizes, a random
intercept with or without correlated slopes, an optional nested factor,
unbalanced — dense against sparse. Random crossed designs: two or three
crossed factors, scalar or vector terms — blocked against sparse. At random
θ, some of it on the boundary; objective, solution, conditional variances
and gradient compared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import sparselmm
import sparselmm.backends

FORMULAS = [
    "y ~ x + (1|g)",
    "y ~ x + (1 + x|g)",
    "y ~ x + (1 + x + z|g)",
    "y ~ x + (1|g) + (0 + x|g)",
    "y ~ x + (1|g/h)",
    "y ~ z + (1 + x|g) + (1|g:h)",
]


@st.composite
def nested_design(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    ngroups = draw(st.integers(2, 25))
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 12, ngroups)
    n = int(sizes.sum())
    g = np.repeat(np.arange(ngroups), sizes)
    data = pd.DataFrame({
        "g": [f"g{i}" for i in g],
        "h": [f"h{k}" for k in rng.integers(0, 3, n)],
        "x": rng.normal(size=n),
        "z": rng.uniform(-1, 1, size=n),
        "y": rng.normal(size=n) + rng.normal(size=ngroups)[g],
    })
    formula = draw(st.sampled_from(FORMULAS))
    reml = draw(st.booleans())
    return data, formula, reml, rng


def assert_agree(a, b, rng):
    """Objective, solution, conditional variances and gradient of two models at random θ."""
    lower = a.lower
    for _ in range(3):
        theta = rng.normal(size=len(lower))
        theta[lower == 0] = rng.uniform(0.0, 2.0, (lower == 0).sum())
        if rng.uniform() < 0.3:
            theta[rng.integers(0, len(theta))] = 0.0  # on the boundary
        fa, fb = a.objective(theta), b.objective(theta)
        assert abs(fa - fb) <= 1e-10 * abs(fb)
        sa, sb = a.backend.solution(theta), b.backend.solution(theta)
        np.testing.assert_allclose(sa.beta, sb.beta, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(sa.u, sb.u, rtol=1e-8, atol=1e-10)
        for va, vb in zip(a.backend.cond_var(theta), b.backend.cond_var(theta)):
            np.testing.assert_allclose(va, vb, rtol=1e-8, atol=1e-12)
        ga, gb = a.backend.gradient(theta), b.backend.gradient(theta)
        # a gradient that vanishes (θ = 0 for every term) is rounding on either side
        np.testing.assert_allclose(ga, gb, rtol=1e-8, atol=1e-9 * np.abs(gb).max() + 1e-12 * abs(fb))
        for sa_, sb_ in zip(a.backend.level_block_sums(theta), b.backend.level_block_sums(theta)):
            np.testing.assert_allclose(sa_, sb_, rtol=1e-9, atol=1e-12)
        Ha, Hb = a.backend.approximate_hessian(theta, gb), b.backend.approximate_hessian(theta, gb)
        np.testing.assert_allclose(Ha, Hb, rtol=1e-7, atol=1e-9 * np.abs(Hb).max() + 1e-12 * abs(fb))


def assert_agrees_with_sparse(design, backend, storage=None):
    """The design fitted on ``backend`` (the blocked one's dense block in ``storage``) and on CHOLMOD:
    the same numbers."""
    data, formula, reml, rng = design
    try:
        model = sparselmm.LinearMixedModel(formula, data, reml=reml, backend=backend)
    except sparselmm.DataError:  # e.g. as many levels as rows: lme4 refuses it too
        assume(False)
    if storage is not None:
        model.backend = sparselmm.backends.BlockedBackend(model.layout, model.crossprod, reml, storage=storage)
    sparse = sparselmm.LinearMixedModel(formula, data, reml=reml, backend="sparse")
    assert model.backend.name == backend and sparse.backend.name == "sparse"
    assert_agree(model, sparse, rng)


@settings(max_examples=40, deadline=None)
@given(nested_design())
def test_dense_and_sparse_agree(design):
    assert_agrees_with_sparse(design, "dense")


CROSSED_FORMULAS = [
    "y ~ x + (1 + x|a)",  # one term: nothing left after it (m = 0)
    "y ~ x + (1|a) + (1|b)",
    "y ~ x + (1|a) + (1|b) + (1|c)",
    "y ~ x + (1 + x|a) + (1|b)",
    "y ~ x + (1|a) + (1 + x|b) + (1|c)",
    "y ~ z + (1 + x + z|a) + (0 + x|b)",
    "y ~ x + (1 + x||a) + (1|b:c)",
]


@st.composite
def crossed_design(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(30, 300))
    na, nb, nc = rng.integers(5, 40), rng.integers(2, 15), rng.integers(2, 5)
    a, b, c = rng.integers(0, na, n), rng.integers(0, nb, n), rng.integers(0, nc, n)
    data = pd.DataFrame({
        "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b], "c": [f"c{i}" for i in c],
        "x": rng.normal(size=n), "z": rng.uniform(-1, 1, size=n),
    })
    data["y"] = rng.normal(size=n) + rng.normal(size=na)[a] + rng.normal(size=nb)[b] * data["x"]
    return data, draw(st.sampled_from(CROSSED_FORMULAS)), draw(st.booleans()), rng


@settings(max_examples=40, deadline=None)
@given(crossed_design(), st.sampled_from(["full", "packed"]))
def test_blocked_and_sparse_agree(design, storage):
    assert_agrees_with_sparse(design, "blocked", storage)


def test_auto_choice():
    rng = np.random.default_rng(0)
    n = 200
    data = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "g": rng.integers(0, 20, n).astype(str), "b": rng.integers(0, 7, n).astype(str)})
    assert sparselmm.LinearMixedModel("y ~ x + (1 + x|g)", data).backend.name == "dense"
    assert sparselmm.LinearMixedModel("y ~ x + (1|g) + (1|b)", data).backend.name == "blocked"
    # after eliminating g, 600 levels of b in a chain (g level i meets b levels i and i + 1 mod 600):
    # a sparse trailing block, CHOLMOD's
    i = np.repeat(np.arange(1500), 2)
    sparse_tail = pd.DataFrame({"y": rng.normal(size=len(i)), "g": i.astype(str),
                                "b": ((i + np.arange(len(i)) % 2) % 600).astype(str)})
    assert sparselmm.LinearMixedModel("y ~ 1 + (1|g) + (1|b)", sparse_tail).backend.name == "sparse"


def test_blocked_parallel_and_serial_kernels_agree():
    """The blocked backend's parallel Schur pass and solves give its serial twins' numbers."""
    rng = np.random.default_rng(5)
    n = 3000
    data = pd.DataFrame({"a": rng.integers(0, 300, n).astype(str), "b": rng.integers(0, 60, n).astype(str),
                         "c": rng.integers(0, 4, n).astype(str), "x": rng.normal(size=n)})
    data["y"] = data["x"] + rng.normal(size=n)
    model = sparselmm.LinearMixedModel("y ~ x + (1|a) + (1|b) + (1|c)", data)
    serial = sparselmm.backends.BlockedBackend(model.layout, model.crossprod, parallel=False)
    parallel = sparselmm.backends.BlockedBackend(model.layout, model.crossprod, parallel=True)
    for theta in (np.array([0.7, 0.4, 0.2]), np.array([1.5, 0.0, 0.3])):
        assert parallel.objective(theta) == pytest.approx(serial.objective(theta), rel=1e-13)
        np.testing.assert_allclose(parallel.gradient(theta), serial.gradient(theta), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(parallel.solution(theta).u, serial.solution(theta).u, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["dense", "sparse", "blocked"])
def test_inverse_columns_against_dense_inverse(backend):
    rng = np.random.default_rng(2)
    n = 400
    data = pd.DataFrame({"g": rng.integers(0, 30, n).astype(str), "b": rng.integers(0, 6, n).astype(str),
                         "x": rng.normal(size=n)})
    data["y"] = rng.normal(size=n)
    formula = "y ~ x + (1 + x|g)" if backend == "dense" else "y ~ x + (1 + x|g) + (1|b)"
    model = sparselmm.LinearMixedModel(formula, data, backend=backend)
    theta = np.linspace(0.3, 0.9, model.layout.ntheta)
    Lam = model.layout.lambda_matrix(theta).toarray()
    A = Lam.T @ model.crossprod.ZtZ.toarray() @ Lam + np.eye(model.layout.q)
    cols = np.array([0, 3, model.layout.q - 1])
    np.testing.assert_allclose(model.backend.inverse_columns(theta, cols), np.linalg.inv(A)[:, cols],
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["dense", "blocked", "sparse"])
def test_failed_factorization_leaves_no_stale_cache(backend):
    """A θ whose factorization fails (here G − C'C loses positivity: y is almost exactly fitted by the
    group means) overwrites the backend's buffers; the next call at the earlier θ must refactor."""
    rng = np.random.default_rng(0)
    n, G = 200, 20
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    data = pd.DataFrame({"y": rng.normal(size=G)[g] + x + 1e-9 * rng.normal(size=n), "x": x, "g": g.astype(str)})
    model = sparselmm.LinearMixedModel("y ~ x + (1|g)", data, backend=backend, reml=False)
    fresh = sparselmm.LinearMixedModel("y ~ x + (1|g)", data, backend=backend, reml=False)
    theta = np.array([3.0])
    model.objective(theta)
    with pytest.raises(np.linalg.LinAlgError):
        model.objective(np.array([1e11]))
    g_fresh = fresh.backend.gradient(theta)
    np.testing.assert_allclose(model.backend.gradient(theta), g_fresh, rtol=1e-10)
    np.testing.assert_allclose(model.backend.approximate_hessian(theta, g_fresh),
                               fresh.backend.approximate_hessian(theta, g_fresh), rtol=1e-10)
