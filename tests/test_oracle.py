"""Property tests: the objective against an independent dense oracle, and its invariances.

Designs are drawn by hypothesis: 1–3 grouping factors of 2–8 levels, crossed
or nested (unique inner labels, or raw labels joined with ``a:b``), random
intercepts, slopes, uncorrelated ``||`` terms or a categorical inside a term,
unbalanced group sizes, empty cells, sometimes missing values. The oracle
(tests/oracle.py) builds V = σ²(ZΛΛ'Z' + I) densely from the terms and needs
none of the backends' algebra. Examples are few and derandomized, so the
file stays fast and its runs repeatable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import sparselmm
from sparselmm.backends.dense import nested_groups

from .oracle import dense_objective

SETTINGS = dict(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

TERM_EXPRS = ["1", "1", "1 + x", "0 + x", "x ||", "0 + c"]
FIXED = ["1", "x", "1 + x + c", "x * c", "0 + x", "0"]


@dataclass
class Design:
    data: pd.DataFrame
    fixed: str
    terms: list[tuple[str, str]]  # (lhs of the bar, grouping factor)
    nested: bool

    def formula(self, terms=None) -> str:
        bars = [f"({e} {g})" if e.endswith("||") else f"({e} | {g})" for e, g in (terms or self.terms)]
        return f"y ~ {self.fixed} + " + " + ".join(bars)

    @property
    def has_intercept(self) -> bool:
        return self.fixed not in ("0", "0 + x")

    @property
    def factors(self) -> list[str]:
        return [c for c in self.data.columns if c.startswith("g")]


@st.composite
def designs(draw, structure: str | None = None, allow_missing=True) -> Design:
    """A random design; ``structure`` is "crossed", "nested", "nested-colon" (g1:g2) or drawn."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(30, 60))
    structure = structure or draw(st.sampled_from(["crossed", "nested", "nested-colon"]))
    nfac = draw(st.integers(1 if structure == "crossed" else 2, 3))
    nested = structure != "crossed"
    colon = structure == "nested-colon"  # nested written as g1:g2 with repeated inner labels
    data = pd.DataFrame({
        "y": rng.normal(size=n) * draw(st.sampled_from([1.0, 0.01, 30.0])) + draw(st.sampled_from([0.0, 5.0, -200.0])),
        "x": rng.normal(size=n),
        "c": rng.choice(["lo", "mid", "hi"], size=n),
    })
    groups = []
    parent = None
    for k in range(nfac):
        nl = draw(st.integers(2, 8 if not nested or k == 0 else 3))
        weights = rng.dirichlet(np.full(nl, 1.5))  # unbalanced
        raw = np.array([f"l{j}" for j in range(nl)])[rng.choice(nl, size=n, p=weights)]
        name = f"g{k + 1}"
        if nested and parent is not None and not colon:
            raw = np.char.add(np.char.add(data[parent].to_numpy().astype(str), "_"), raw)
        data[name] = raw
        group = name if not colon or parent is None else f"{groups[-1]}:{name}"
        groups.append(group)
        parent = name
    terms = [(draw(st.sampled_from(TERM_EXPRS)), g) for g in groups]
    fixed = draw(st.sampled_from(FIXED))
    if allow_missing and draw(st.booleans()):
        for col in draw(st.lists(st.sampled_from(["y", "x", "g1"]), min_size=1, max_size=3)):
            data.loc[int(rng.integers(n)), col] = np.nan
    return Design(data, fixed, terms, nested)


def build(design: Design, formula: str | None = None, data: pd.DataFrame | None = None, **kw):
    """The model, or a rejected example when the draw breaks a data check (e.g. too many levels)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return sparselmm.LinearMixedModel(formula or design.formula(),
                                              design.data if data is None else data, **kw)
        except sparselmm.DataError:
            assume(False)


def random_theta(lower: np.ndarray, rng) -> np.ndarray:
    theta = rng.normal(scale=0.7, size=len(lower))
    diag = lower == 0
    theta[diag] = rng.uniform(0.0, 2.0, size=diag.sum())
    theta[diag & (rng.uniform(size=len(lower)) < 0.15)] = 0.0
    return theta


def oracle(model, theta) -> float:
    return dense_objective(model.layout.terms, model.frame.X, model.frame.y, model.layout.T(theta), model.reml)


def quiet_fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sparselmm.fit(formula, data, **kw)


# --- the oracle ------------------------------------------------------------------

@pytest.mark.parametrize("structure", ["crossed", "nested", "nested-colon"])
def test_objective_matches_dense_oracle(structure):
    @settings(max_examples=20, **SETTINGS)
    @given(design=designs(structure), seed=st.integers(0, 2**32 - 1))
    def check(design, seed):
        objective_matches_dense_oracle(design, seed)

    check()


def objective_matches_dense_oracle(design, seed):
    rng = np.random.default_rng(seed)
    for reml in (False, True):
        sparse = build(design, reml=reml, backend="sparse")
        blocked = build(design, reml=reml, backend="blocked")  # any design: the first term in closed form
        try:
            dense = build(design, reml=reml, backend="dense")
        except ValueError:
            assert not design.nested, "a nested design must be accepted by the dense backend"
            assert nested_groups(sparse.layout) is None
            dense = None
        event(f"{len(design.terms)} factor(s), {'nested' if design.nested else 'crossed'}"
              f"{' as a:b' if ':' in design.formula() else ''}, "
              f"dense backend {'compared' if dense is not None else 'refused'}")
        for _ in range(2):
            theta = random_theta(sparse.lower, rng)
            want = oracle(sparse, theta)
            assert sparse.objective(theta) == pytest.approx(want, rel=1e-9)
            assert blocked.objective(theta) == pytest.approx(want, rel=1e-9)
            if dense is not None:
                assert dense.objective(theta) == pytest.approx(want, rel=1e-9)


# --- invariances ------------------------------------------------------------------

@settings(max_examples=15, **SETTINGS)
@given(design=designs(), seed=st.integers(0, 2**32 - 1))
def test_row_permutation_leaves_objective_unchanged(design, seed):
    rng = np.random.default_rng(seed)
    model = build(design, reml=bool(seed % 2))
    shuffled = design.data.iloc[rng.permutation(len(design.data))]
    other = build(design, data=shuffled, reml=bool(seed % 2))
    assert other.layout.theta_names == model.layout.theta_names
    for _ in range(2):
        theta = random_theta(model.lower, rng)
        assert other.objective(theta) == pytest.approx(model.objective(theta), rel=1e-10)


@settings(max_examples=15, **SETTINGS)
@given(design=designs(), seed=st.integers(0, 2**32 - 1))
def test_relabelling_levels_leaves_objective_unchanged(design, seed):
    """New names that sort in another order: levels are permuted inside each term, θ means the same."""
    rng = np.random.default_rng(seed)
    model = build(design)
    data = design.data.copy()
    for g in design.factors:
        old = sorted(data[g].dropna().unique())
        new = [f"{chr(ord('z') - int(k))}{k}" for k in rng.permutation(len(old))]
        data[g] = data[g].map(dict(zip(old, new)))
    other = build(design, data=data)
    assert [t.nlevels for t in other.layout.terms] == [t.nlevels for t in model.layout.terms]
    for _ in range(2):
        theta = random_theta(model.lower, rng)
        assert other.objective(theta) == pytest.approx(model.objective(theta), rel=1e-10)


@settings(max_examples=15, **SETTINGS)
@given(design=designs(), seed=st.integers(0, 2**32 - 1))
def test_reordering_random_terms_leaves_objective_unchanged(design, seed):
    """θ is matched by name: equal-sized terms may swap places in the layout."""
    rng = np.random.default_rng(seed)
    model = build(design)
    order = list(rng.permutation(len(design.terms)))
    assume(order != list(range(len(order))) or len(order) == 1)
    other = build(design, formula=design.formula([design.terms[k] for k in order]))
    names = model.layout.theta_names
    assume(len(set(names)) == len(names))
    assert sorted(other.layout.theta_names) == sorted(names)
    for _ in range(2):
        theta = pd.Series(random_theta(model.lower, rng), index=names)
        assert other.objective(theta[other.layout.theta_names].to_numpy()) == pytest.approx(
            model.objective(theta.to_numpy()), rel=1e-10)


@settings(max_examples=15, **SETTINGS)
@given(design=designs(), seed=st.integers(0, 2**32 - 1), shift=st.sampled_from([-1e3, -2.5, 0.1, 7.0, 1e4]))
def test_shifting_response_with_intercept_leaves_objective_unchanged(design, seed, shift):
    assume(design.has_intercept)
    rng = np.random.default_rng(seed)
    for reml in (False, True):
        model = build(design, reml=reml)
        other = build(design, data=design.data.assign(y=design.data.y + shift), reml=reml)
        theta = random_theta(model.lower, rng)
        assert other.objective(theta) == pytest.approx(model.objective(theta), rel=1e-9)


def scale_shift(model, c: float) -> float:
    """How much the objective grows when y is multiplied by c: 2·n·log|c| (ML), 2·(n − p)·log|c| (REML)."""
    n, p = model.frame.X.shape
    return 2 * ((n - p) if model.reml else n) * np.log(abs(c))


@settings(max_examples=15, **SETTINGS)
@given(design=designs(), seed=st.integers(0, 2**32 - 1), c=st.sampled_from([-3.0, 0.001, 0.5, 2.0, 1e3]))
def test_scaling_response_shifts_objective_by_log_scale(design, seed, c):
    rng = np.random.default_rng(seed)
    for reml in (False, True):
        model = build(design, reml=reml)
        other = build(design, data=design.data.assign(y=design.data.y * c), reml=reml)
        theta = random_theta(model.lower, rng)
        assert other.objective(theta) == pytest.approx(model.objective(theta) + scale_shift(model, c),
                                                       rel=1e-10, abs=1e-8)


@settings(max_examples=5, **SETTINGS)
@given(design=designs(allow_missing=False), c=st.sampled_from([-4.0, 0.01, 50.0]), reml=st.booleans())
def test_scaling_response_keeps_fitted_theta(design, c, reml):
    """At the optimum too: the fitted objective moves by the same constant and θ̂ does not move."""
    model = build(design, reml=reml)  # rejects draws that break a data check
    fit = quiet_fit(design.formula(), design.data, reml=reml)
    scaled = quiet_fit(design.formula(), design.data.assign(y=design.data.y * c), reml=reml)
    assert scaled.objective == pytest.approx(fit.objective + scale_shift(model, c), rel=1e-9, abs=1e-6)
    np.testing.assert_allclose(scaled.theta.to_numpy(), fit.theta.to_numpy(), atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(scaled.fe_params.to_numpy(), c * fit.fe_params.to_numpy(),
                               rtol=1e-3, atol=1e-3 * abs(c) * (1 + np.abs(fit.fe_params.to_numpy()).max(initial=0)))
