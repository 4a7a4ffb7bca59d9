"""Analytic gradients of the objective against central finite differences, every backend."""

from __future__ import annotations

import numpy as np
import pytest

import sparselmm

from .conftest import REF_IDS, REFS, load_data, load_reference
from .oracle import dense_approximate_hessian
from .test_sparse_backend import FORMULAS, random_data, random_theta


def central_difference(f, x, h=1e-3):
    """Richardson-extrapolated central differences: error O(h⁴) plus rounding / h."""
    def d(h):
        return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(len(x))])
    return (4 * d(h / 2) - d(h)) / 3


def assert_gradient(model, theta, beta=None):
    g = model.backend.gradient(theta, beta)
    if beta is None:
        fd = central_difference(model.objective, theta)
    else:
        fd = central_difference(lambda t: fixed_beta_objective(model, t, beta), theta)
    # at an optimum the gradient is ~0: rounding in the objective then bounds the check
    atol = 1e-6 * np.abs(fd).max() + 1e-8 * abs(model.objective(theta))
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=atol)


def fixed_beta_objective(model, theta, beta):
    """The objective at a given β: r² + |RX (β − β̂)|² in place of r²."""
    backend = model.backend
    logdet, _, RX, beta_hat, pwrss = backend._update(theta)
    d = RX @ (beta - beta_hat)
    n, p = model.crossprod.n, len(beta)
    nu = n - p if model.reml else n
    ld_rx = 2 * np.log(np.abs(np.diag(RX))).sum() if model.reml else 0.0
    return logdet + ld_rx + nu * (1 + np.log(2 * np.pi * (pwrss + d @ d) / nu))


@pytest.mark.parametrize(("case", "model_id", "kind"), REFS, ids=REF_IDS)
@pytest.mark.parametrize("backend", ["sparse", "dense", "blocked"])
def test_reference_models(case, model_id, kind, backend):
    ref = load_reference(model_id, kind)
    data = load_data(case, ref)
    try:
        model = sparselmm.LinearMixedModel(ref["formula"], data, reml=kind == "reml", backend=backend)
    except ValueError:
        assert backend == "dense" and model_id in ("penicillin", "insteval")  # crossed designs
        return
    rng = np.random.default_rng(3)
    lme4_theta = np.array(list(ref["theta"].values()))
    for theta in (lme4_theta, random_theta(model, rng), random_theta(model, rng)):
        assert_gradient(model, theta)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_random_designs_and_fixed_beta(formula, reml):
    rng = np.random.default_rng(11)
    for seed in range(2):
        data = random_data(seed)
        for backend in ("sparse", "dense", "blocked"):
            try:
                model = sparselmm.LinearMixedModel(formula, data, reml=reml, backend=backend)
            except ValueError:
                continue  # crossed: no dense backend
            theta = random_theta(model, rng)
            assert_gradient(model, theta)
            beta = model.backend.solution(theta).beta + rng.normal(size=model.frame.X.shape[1])
            assert_gradient(model, theta, beta)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_approximate_hessian_matches_dense_oracle(formula, reml):
    """The average-information Hessian (plus the even θ_j's exact term) from crossproducts and solves,
    every backend, against the same quantities from n × n matrices."""
    rng = np.random.default_rng(5)
    data = random_data(2)
    for backend in ("sparse", "dense", "blocked"):
        try:
            model = sparselmm.LinearMixedModel(formula, data, reml=reml, backend=backend)
        except ValueError:
            continue  # crossed: no dense backend
        for theta in (random_theta(model, rng), random_theta(model, rng)):
            H = model.backend.approximate_hessian(theta, model.backend.gradient(theta))
            want = dense_approximate_hessian(model.layout, model.frame.X, model.frame.y, theta, reml)
            np.testing.assert_allclose(H, want, rtol=1e-7, atol=1e-9 * np.abs(want).max())
            np.testing.assert_array_equal(H, H.T)


def test_approximate_hessian_is_the_hessian_at_a_scalar_optimum():
    """With scalar terms, the average information differs from the Hessian at an interior optimum only
    by y'PV_jPV_kPy − tr(PV_jPV_k), whose mean is zero: Penicillin (two crossed scalar terms, 144 rows)."""
    ref = load_reference("penicillin", "reml")
    model = sparselmm.LinearMixedModel(ref["formula"], load_data("penicillin", ref))
    theta = np.asarray(model.fit().theta, dtype=float)
    H = model.backend.approximate_hessian(theta, model.backend.gradient(theta))
    fd = central_difference(model.backend.gradient, theta)  # row i: ∂gradient/∂θ_i
    np.testing.assert_allclose(H, (fd + fd.T) / 2, rtol=0.05)
