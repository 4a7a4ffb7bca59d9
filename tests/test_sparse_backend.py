"""The CHOLMOD backend against the dense oracle, on random crossed and nested designs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sparselmm

from .oracle import dense_objective

FORMULAS = [
    "y ~ x + (1|a) + (1|b)",                    # crossed
    "y ~ x + (1 + x|a) + (1|b)",                # crossed, correlated slope
    "y ~ x + (1 + x||a) + (0 + z|b)",           # uncorrelated
    "y ~ x + (1|a/b)",                          # nested
    "y ~ x * c + (1 + x + z|a) + (1|a:c)",      # 3×3 block, interaction factor
    "y ~ 0 + x + (0 + c|a) + (1|b)",            # categorical inside a term
]


def random_data(seed: int, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "y": rng.normal(size=n) + 3,
        "x": rng.normal(size=n),
        "z": rng.uniform(size=n),
        "a": rng.choice(list("ABCDEFG"), size=n),
        "b": rng.choice([f"b{i}" for i in range(9)], size=n),
        "c": rng.choice(["lo", "mid", "hi"], size=n),
    })


def random_theta(model, rng) -> np.ndarray:
    lower = model.lower
    theta = rng.normal(size=len(lower))
    theta[lower == 0] = rng.uniform(0.0, 2.0, size=(lower == 0).sum())
    return theta


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_objective_matches_dense_oracle(formula, reml):
    rng = np.random.default_rng(7)
    for seed in range(3):
        model = sparselmm.LinearMixedModel(formula, random_data(seed), reml=reml)
        for _ in range(3):
            theta = random_theta(model, rng)
            want = dense_objective(model.layout.terms, model.frame.X, model.frame.y,
                                   model.layout.T(theta), reml)
            assert model.objective(theta) == pytest.approx(want, rel=1e-10)


def test_boundary_theta_keeps_pattern():
    """θ with zeros (a singular point) factors on the same pattern and matches the oracle."""
    model = sparselmm.LinearMixedModel("y ~ x + (1 + x|a) + (1|b)", random_data(3))
    for theta in ([0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.5], [0.0, 0.3, 0.0, 0.0]):
        theta = np.array(theta)
        want = dense_objective(model.layout.terms, model.frame.X, model.frame.y, model.layout.T(theta), True)
        assert model.objective(theta) == pytest.approx(want, rel=1e-10)


def test_conditional_variances_match_dense_inverse():
    """Selected inversion gives the diagonal blocks of Λ A⁻¹ Λ' of a dense inverse."""
    from .oracle import dense_Z

    model = sparselmm.LinearMixedModel("y ~ x + (1 + x|a) + (1|b) + (1|c)", random_data(5))
    rng = np.random.default_rng(1)
    theta = random_theta(model, rng)
    Z = dense_Z(model.layout.terms)
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    blocks = model.layout.T(theta)
    for k, t in enumerate(model.layout.terms):
        o = model.layout.col_offset[k]
        for j in range(t.nlevels):
            Lam[o + j * t.p:o + (j + 1) * t.p, o + j * t.p:o + (j + 1) * t.p] = blocks[k]
    A = Lam.T @ Z.T @ Z @ Lam + np.eye(Z.shape[1])
    W = Lam @ np.linalg.inv(A) @ Lam.T
    for k, (t, got) in enumerate(zip(model.layout.terms, model.backend.cond_var(theta))):
        o = model.layout.col_offset[k]
        for j in range(t.nlevels):
            s = slice(o + j * t.p, o + (j + 1) * t.p)
            np.testing.assert_allclose(got[j], W[s, s], rtol=1e-9, atol=1e-12)


def test_solution_matches_normal_equations():
    """β̂ and b̂ solve the penalized normal equations (Henderson's mixed-model equations)."""
    from .oracle import dense_Z

    data = random_data(11)
    model = sparselmm.LinearMixedModel("y ~ x + (1 + x|a) + (1|b)", data)
    theta = random_theta(model, np.random.default_rng(2))
    sol = model.backend.solution(theta)
    Z = dense_Z(model.layout.terms)
    X, y = model.frame.X, model.frame.y
    b = model.layout.lambda_times(theta, sol.u)
    # [X'X X'Z; Z'X Z'Z + (ΛΛ')⁻¹] [β; b] = [X'y; Z'y] with Λ⁻¹ applied as u = Λ⁻¹b
    resid = y - X @ sol.beta - Z @ b
    np.testing.assert_allclose(X.T @ resid, 0, atol=1e-8)
    lhs = model.layout.lambda_t_times(theta, Z.T @ resid) - sol.u
    np.testing.assert_allclose(lhs, 0, atol=1e-8)
    assert sol.pwrss == pytest.approx(resid @ resid + sol.u @ sol.u, rel=1e-10)
