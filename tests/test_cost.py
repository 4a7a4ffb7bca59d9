"""The cost model that chooses the backend (``sparselmm.cost``), and the estimates a fit reports
before it starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sparselmm
from sparselmm import cost
from sparselmm.backends.blocked import schur_density, schur_pairs

#: ``python -m benchmarks.backend_costs``'s table (a copy): both backends timed on banded and
#: MovieLens-like designs, with the structure the model reads.
TABLE = json.loads((Path(__file__).parent / "data" / "backend_costs.json").read_text())

#: Where the two backends were this close, either choice is right.
TIE = 1.15


@pytest.mark.parametrize("row", TABLE, ids=[r["design"] for r in TABLE])
def test_the_cost_model_picks_the_faster_backend_on_the_measured_table(row):
    blocked = cost.prefer_blocked(row["m"], row["pairs"], row["density"], row["q"], row["sparse_multiply_adds"],
                                  rate=row["rate"], factor_fill=row["factor_fill"])
    fast, slow = sorted([row["blocked_seconds"], row["sparse_seconds"]])
    if slow / fast < TIE:
        pytest.skip(f"a tie: {slow / fast:.2f}×")
    assert blocked == (row["blocked_seconds"] < row["sparse_seconds"])


def test_the_table_has_clear_cases_both_ways():
    clear = [r for r in TABLE if max(r["blocked_seconds"], r["sparse_seconds"])
             >= TIE * min(r["blocked_seconds"], r["sparse_seconds"])]
    assert {r["blocked_seconds"] < r["sparse_seconds"] for r in clear} == {True, False}
    assert len(clear) >= 8


def test_prefer_blocked_without_an_analysis():
    """A full block or a small one: blocked at once; otherwise the answer waits for CHOLMOD's count."""
    assert cost.prefer_blocked(10_000, 1e9, 0.9, 80_000) is True
    assert cost.prefer_blocked(400, 1e5, 0.01, 2_000) is True  # 6.4e7 flops: nothing to save
    assert cost.prefer_blocked(3_000, 1e6, 0.05, 15_000) is None
    rate = 4e10
    dense = cost.blocked_iteration_seconds(3_000, 1e6, 15_000, rate)
    assert dense == pytest.approx(3_000 ** 3 / (rate * cost.LARGE_BLOCK_SPEEDUP) + 1e6 * cost.PAIR_SECONDS
                                  + 15_000 * cost.COLUMN_SECONDS)
    # CHOLMOD's count decides: fewer multiply-adds than the dense block's, sparse; more, blocked
    assert cost.prefer_blocked(3_000, 1e6, 0.05, 15_000, 1e8, rate) is False
    assert cost.prefer_blocked(3_000, 1e6, 0.05, 15_000, 1e12, rate) is True


def test_a_block_whose_factor_fills_in_needs_no_analysis():
    """InstEval: S is a fifth full, its factor nearly all; blocked without CHOLMOD's symbolic analysis
    (which took a fifth of the fit), from a pass over the pairs of rows."""
    from sparselmm.backends.blocked import schur_factor_fill
    from sparselmm.datasets import load_insteval

    model = sparselmm.LinearMixedModel("y ~ service + (1|s) + (1|d) + (1|dept)", load_insteval(), reml=False)
    layout, cp = model.layout, model.crossprod
    m, pairs, density = layout.q - int(layout.col_offset[1]), schur_pairs(layout, cp), schur_density(layout, cp)
    assert density < cost.DENSE_SCHUR and cost.prefer_blocked(m, pairs, density, layout.q) is None
    fill = schur_factor_fill(layout, cp, pairs, enough=1.0)
    assert fill > 0.95
    assert cost.prefer_blocked(m, pairs, density, layout.q, factor_fill=fill) is True
    assert model.backend.name == "blocked"
    assert cost.prefer_blocked(m, pairs, density, layout.q, factor_fill=0.3) is None


def test_factor_fill_sees_a_band_behind_the_levels_order():
    """Items rated in a narrow band, their labels sorted as strings (the band scrambled in Z's order):
    the reverse Cuthill–McKee ordering finds it, the fill is small, and CHOLMOD is chosen."""
    from sparselmm.backends.blocked import REORDER_MIN_ORDER, schur_factor_fill

    data = _banded(REORDER_MIN_ORDER, 3)
    data["item"] = "i" + data["item"]  # string order: 0, 1, 10, 100, ...
    model = sparselmm.LinearMixedModel("y ~ 1 + (1|user) + (1|item)", data)
    layout, cp = model.layout, model.crossprod
    assert schur_factor_fill(layout, cp, schur_pairs(layout, cp), enough=1.0) < 0.05
    assert model.backend.name == "sparse"


def test_factor_fill_counts_the_cholesky_factor():
    """Against the dense Cholesky factor's structure of S (its pattern filled with random values)."""
    from sparselmm.backends.blocked import schur_factor_fill

    data = _banded(300, 10)
    model = sparselmm.LinearMixedModel("y ~ 1 + (1|user) + (1|item)", data, backend="blocked")
    layout, cp = model.layout, model.crossprod
    q1 = int(layout.col_offset[1])
    Z = (cp.ZtZ != 0).astype(float).toarray()
    S = (Z[q1:, :q1] @ Z[:q1, q1:] + Z[q1:, q1:]) != 0
    rng = np.random.default_rng(1)
    A = np.where(S, rng.uniform(0.1, 1, S.shape), 0.0)
    A = (A + A.T) / 2 + S.shape[0] * np.eye(S.shape[0])
    L = np.linalg.cholesky(A)
    m = S.shape[0]
    natural = np.count_nonzero(np.abs(L) > 1e-300) / (m * (m + 1) / 2)
    assert schur_factor_fill(layout, cp, schur_pairs(layout, cp), enough=1.0) == pytest.approx(natural, rel=1e-12)


def _banded(n_items, window, seed=0):
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(4 * n_items), 20)
    item = (rng.integers(0, n_items, 4 * n_items)[user] + rng.integers(-window, window + 1, len(user))) % n_items
    return pd.DataFrame({"y": rng.normal(size=len(user)), "user": user.astype(str), "item": item.astype(str)})


def test_auto_follows_the_cost_model():
    """A narrow band after the users: CHOLMOD; the same design with items drawn at random: blocked."""
    narrow = sparselmm.LinearMixedModel("y ~ 1 + (1|user) + (1|item)", _banded(2_000, 2))
    layout, cp = narrow.layout, narrow.crossprod
    assert schur_density(layout, cp) < 0.05
    assert narrow.backend.name == "sparse"
    m = layout.q - int(layout.col_offset[1])
    assert not cost.prefer_blocked(m, schur_pairs(layout, cp), schur_density(layout, cp), layout.q,
                                   narrow.backend.flops)
    wide = sparselmm.LinearMixedModel("y ~ 1 + (1|user) + (1|item)", _banded(2_000, 2_000))
    assert schur_density(wide.layout, wide.crossprod) >= cost.DENSE_SCHUR
    assert wide.backend.name == "blocked"


def test_schur_pairs_counts_the_pairs_of_rows_of_each_column_of_L21():
    data = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "u": ["a", "a", "b", "c", "d", "d"],
                         "i": ["x", "y", "x", "y", "x", "x"]})
    model = sparselmm.LinearMixedModel("y ~ 1 + (1|u) + (1|i)", data, backend="blocked")
    assert model.layout.terms[0].group == "u"  # the most levels: eliminated first
    # u = a meets 2 items (2·3/2 pairs, the diagonal included), b, c and d one each
    assert schur_pairs(model.layout, model.crossprod) == 3 + 1 + 1 + 1


@pytest.mark.parametrize("backend", ["dense", "blocked", "sparse"])
def test_verbose_says_the_backend_memory_and_time_before_the_first_factorization(backend, capsys):
    rng = np.random.default_rng(0)
    n = 2_000
    data = pd.DataFrame({"y": rng.normal(size=n), "g": rng.integers(0, 200, n).astype(str),
                         "b": rng.integers(0, 30, n).astype(str)})
    formula = "y ~ 1 + (1|g)" if backend == "dense" else "y ~ 1 + (1|g) + (1|b)"
    model = sparselmm.LinearMixedModel(formula, data, backend=backend, verbose=True)
    err = capsys.readouterr().err
    assert model.backend.nfactor == 0
    assert err.startswith(f"sparselmm: {backend} backend")
    assert "an iteration on this machine" in err and "MiB" in err and "GFLOP/s" in err
    estimate = model.backend.estimate()
    assert 0 < estimate.bytes < 50 * 2**20 and 0 < estimate.seconds < 1
    sparselmm.LinearMixedModel(formula, data, backend=backend)
    assert capsys.readouterr().err == ""
