"""Standing test: the dense and sparse backends fit the same model, so agree to 1e-10.

Random nested designs (hypothesis): groups of random sizes, a random
intercept with or without correlated slopes, an optional nested factor,
unbalanced, at random θ; objective, solution, conditional variances and
gradient compared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import sparselmm

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


@settings(max_examples=40, deadline=None)
@given(nested_design())
def test_dense_and_sparse_agree(design):
    data, formula, reml, rng = design
    try:
        dense = sparselmm.LinearMixedModel(formula, data, reml=reml, backend="dense")
    except sparselmm.DataError:  # e.g. as many levels as rows: lme4 refuses it too
        assume(False)
    sparse = sparselmm.LinearMixedModel(formula, data, reml=reml, backend="sparse")
    assert dense.backend.name == "dense" and sparse.backend.name == "sparse"
    lower = dense.lower
    for _ in range(2):
        theta = rng.normal(size=len(lower))
        theta[lower == 0] = rng.uniform(0.0, 2.0, (lower == 0).sum())
        a, b = dense.objective(theta), sparse.objective(theta)
        assert abs(a - b) <= 1e-10 * abs(b)
        sa, sb = dense.backend.solution(theta), sparse.backend.solution(theta)
        np.testing.assert_allclose(sa.beta, sb.beta, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(sa.u, sb.u, rtol=1e-8, atol=1e-10)
        for va, vb in zip(dense.backend.cond_var(theta), sparse.backend.cond_var(theta)):
            np.testing.assert_allclose(va, vb, rtol=1e-8, atol=1e-12)
        ga, gb = dense.backend.gradient(theta), sparse.backend.gradient(theta)
        np.testing.assert_allclose(ga, gb, rtol=1e-8, atol=1e-9 * np.abs(gb).max())


def test_auto_choice():
    rng = np.random.default_rng(0)
    n = 200
    data = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "g": rng.integers(0, 20, n).astype(str), "b": rng.integers(0, 7, n).astype(str)})
    assert sparselmm.LinearMixedModel("y ~ x + (1 + x|g)", data).backend.name == "dense"
    assert sparselmm.LinearMixedModel("y ~ x + (1|g) + (1|b)", data).backend.name == "sparse"
