"""The crossproducts of [Z X y] against a dense Z built by brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sparselmm


def dense_Z(layout):
    n = len(layout.terms[0].codes)
    Z = np.zeros((n, layout.q))
    for k, t in enumerate(layout.terms):
        for r in range(n):
            c0 = layout.col_offset[k] + t.codes[r] * t.p
            Z[r, c0:c0 + t.p] = t.X[r]
    return Z


def block_pattern(layout):
    """Whole blocks wherever two levels meet in a row where both terms are not all zero, and every level's own."""
    n = len(layout.terms[0].codes)
    P = np.zeros((layout.q, layout.q), dtype=bool)
    spans = []
    for k, t in enumerate(layout.terms):
        base = layout.col_offset[k] + t.codes * t.p
        spans.append([(b, b + t.p) if np.any(t.X[r] != 0) else None for r, b in enumerate(base)])
        for lev in range(t.nlevels):
            c0 = layout.col_offset[k] + lev * t.p
            P[c0:c0 + t.p, c0:c0 + t.p] = True
    for r in range(n):
        active = [s[r] for s in spans if s[r] is not None]
        for a0, a1 in active:
            for b0, b1 in active:
                P[a0:a1, b0:b1] = True
    return P


FORMULAS = ["y ~ x + (1|a) + (1|b)", "y ~ x + (1 + x|a) + (1|b) + (0 + z|c)", "y ~ z + (1 + x + z|a) + (1 + x|b)",
            "y ~ x + (1|a/b)", "y ~ x + (1 + x|a)", "y ~ x + (0 + z|b)"]


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("seed", [0, 1])
def test_crossproducts_equal_dense(formula, seed):
    rng = np.random.default_rng(seed)
    n = 300
    data = pd.DataFrame({"a": rng.integers(0, 25, n).astype(str), "b": rng.integers(0, 9, n).astype(str),
                         "c": rng.integers(0, 4, n).astype(str), "x": rng.normal(size=n),
                         "z": np.where(rng.uniform(size=n) < 0.3, 0.0, rng.normal(size=n)),  # zeros: inactive rows
                         "y": 100 + rng.normal(size=n)})
    model = sparselmm.LinearMixedModel(formula, data)
    cp, layout = model.crossprod, model.layout
    Z = dense_Z(layout)
    X, y = model.frame.X, model.frame.y
    e = y - X @ cp.beta_shift
    np.testing.assert_allclose(cp.beta_shift, np.linalg.lstsq(X, y, rcond=None)[0], rtol=1e-8)
    np.testing.assert_allclose(cp.ZtZ.toarray(), Z.T @ Z, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(cp.ZtX, Z.T @ X, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(cp.Zty, Z.T @ e, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(cp.XtX, X.T @ X, rtol=1e-12)
    assert cp.yty == pytest.approx(e @ e, rel=1e-10)
    pattern = np.zeros((layout.q, layout.q), dtype=bool)
    coo = cp.ZtZ.tocoo()
    pattern[coo.row, coo.col] = True
    np.testing.assert_array_equal(pattern, block_pattern(layout))
    assert cp.ZtZ.has_sorted_indices and np.all(np.diff(cp.ZtZ.indices[cp.ZtZ.indptr[0]:cp.ZtZ.indptr[1]]) > 0)


def test_cancelling_entries_stay_in_the_pattern():
    """Two rows whose products cancel: the block is kept, with an explicit zero."""
    data = pd.DataFrame({"a": ["a1", "a1", "a2", "a2", "a1", "a2"], "b": ["b1", "b1", "b2", "b2", "b2", "b1"],
                         "x": [1.0, -1.0, 2.0, 0.5, 3.0, 1.0], "y": [1.0, 2.0, 3.0, 4.0, 5.0, 7.0]})
    model = sparselmm.LinearMixedModel("y ~ 1 + (0 + x|a) + (1|b)", data)
    cp, layout = model.crossprod, model.layout
    Z = dense_Z(layout)
    np.testing.assert_allclose(cp.ZtZ.toarray(), Z.T @ Z, atol=1e-12)
    coo = cp.ZtZ.tocoo()
    pattern = np.zeros((layout.q, layout.q), dtype=bool)
    pattern[coo.row, coo.col] = True
    np.testing.assert_array_equal(pattern, block_pattern(layout))
    assert np.sum(coo.data == 0.0) == 2  # a1 (x = 1, -1) against b1, both ways


@pytest.mark.parametrize("rows", ["grouped", "shuffled"])
def test_one_term_crossproducts_grouped_or_not(rows):
    """One term: rows grouped by level (summed in runs, chunks cut between levels) or not (a sum per
    chunk) give Z'Z and Z'[X y] of the dense Z."""
    rng = np.random.default_rng(3)
    n = 5000
    data = pd.DataFrame({"g": rng.integers(0, 400, n), "x": rng.normal(size=n)})
    data["y"] = rng.normal(size=n) + data["x"] * rng.normal(size=400)[data["g"]]
    if rows == "grouped":
        data = data.sort_values("g", kind="stable")
    data["g"] = data["g"].astype(str)
    model = sparselmm.LinearMixedModel("y ~ x + (1 + x|g)", data)
    cp, layout = model.crossprod, model.layout
    Z = dense_Z(layout)
    e = model.frame.y - model.frame.X @ cp.beta_shift
    np.testing.assert_allclose(cp.ZtZ.toarray(), Z.T @ Z, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(cp.ZtX, Z.T @ model.frame.X, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(cp.Zty, Z.T @ e, rtol=1e-10, atol=1e-9)


def test_crossproducts_of_pieces_add_up_to_the_whole():
    """Z'Z, Z'[X y], X'X, X'y, y'y and n of two sets of rows, summed (``Crossprod.__add__``: explicit
    zeros of the block pattern kept, whether one piece's pattern lies in the other's or not)."""
    import sparselmm
    from sparselmm.crossprod import crossproducts
    from sparselmm.design import Layout

    rng = np.random.default_rng(4)
    n = 600
    data = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "a": rng.integers(0, 40, n).astype(str), "b": rng.integers(0, 9, n).astype(str)})
    data.loc[:299, "x"] = 0.0  # the first piece's slope columns are zero: explicit zeros in its blocks
    model = sparselmm.LinearMixedModel("y ~ x + (1 + x|a) + (1|b)", data)
    whole = model.crossprod
    shift = whole.beta_shift
    frame = model.frame

    def piece(rows):
        terms = [type(t)(group=t.group, columns=t.columns, levels=t.levels, codes=t.codes[rows], X=t.X[rows])
                 for t in frame.terms]
        return crossproducts(Layout(terms), frame.X[rows], frame.y[rows], shift=shift)

    for first, second in [(np.arange(300), np.arange(300, n)), (np.arange(n), np.arange(0, n, 7))]:
        total = piece(first) + piece(second)
        expected = whole if len(first) + len(second) == n else piece(np.concatenate([first, second]))
        assert total.n == expected.n
        assert total.ZtZ.nnz == expected.ZtZ.nnz  # the same block pattern, explicit zeros included
        np.testing.assert_array_equal(total.ZtZ.indices, expected.ZtZ.indices)
        np.testing.assert_allclose(total.ZtZ.toarray(), expected.ZtZ.toarray(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(total.ZtXy, expected.ZtXy, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(total.XtX, expected.XtX, rtol=1e-12)
        assert total.yty == pytest.approx(expected.yty, rel=1e-12)
