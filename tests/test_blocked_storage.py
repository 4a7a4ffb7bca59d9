"""The blocked backend's two storages of the dense block (full; S⁻¹ in LAPACK's packed format) and
CHOLMOD on the same crossed designs, trailing blocks 300 to 2,000 wide: the same objective, gradient
and variances to 1e-10."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg.lapack import dtrttf

import sparselmm
from sparselmm.backends import BlockedBackend
from sparselmm.backends.blocked import PACKED_MIN_ORDER, choose_storage, dense_bytes
from sparselmm.datasets import simulate_ratings
from sparselmm.lapack import cholesky, packed_cholesky_inverse


def _ratings(n, n_users, n_items, seed, slope=False):
    data = simulate_ratings(n, n_users, n_items, seed=seed)
    if slope:
        data["x"] = np.random.default_rng(seed).normal(size=len(data))
    return data


DESIGNS = [  # (formula, n, users, items): the trailing block is the items' (one or two columns each)
    ("rating ~ 1 + (1|user) + (1|item)", 20_000, 1_500, 301),
    ("rating ~ 1 + (1|user) + (1|item)", 40_000, 3_000, 2_000),
    ("rating ~ x + (1 + x|user) + (1|item)", 20_000, 1_500, 1_000),
    ("rating ~ 1 + (1|user) + (1 + x|item)", 20_000, 1_500, 400),
]


def _backends(formula, n, users, items, reml):
    model = sparselmm.LinearMixedModel(formula, _ratings(n, users, items, seed=items, slope="x" in formula),
                                       reml=reml, backend="sparse")
    args = model.layout, model.crossprod, reml
    return model, {"full": BlockedBackend(*args, storage="full"), "packed": BlockedBackend(*args, storage="packed"),
                   "packed, parallel": BlockedBackend(*args, storage="packed", parallel=True),
                   "sparse": model.backend}


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("design", DESIGNS, ids=lambda d: f"{d[0].split('~')[1].strip()}, {d[3]} items")
def test_storages_and_cholmod_agree(design, reml):
    model, backends = _backends(*design, reml)
    m = model.layout.q - int(model.layout.col_offset[1])
    assert 300 <= m <= 2_200
    sparse = backends.pop("sparse")
    rng = np.random.default_rng(m)
    for theta in (model.theta0, rng.uniform(0.2, 1.5, model.layout.ntheta)):
        f, g = sparse.objective(theta), sparse.gradient(theta)
        sums = sparse.level_block_sums(theta)
        var = sparse.cond_var(theta)
        for name, backend in backends.items():
            assert backend.objective(theta) == pytest.approx(f, rel=1e-10), name
            assert np.linalg.norm(backend.gradient(theta) - g) <= 1e-10 * np.linalg.norm(g), name
            for a, b in zip(backend.level_block_sums(theta), sums):
                np.testing.assert_allclose(a, b, rtol=1e-10, err_msg=name)
            for a, b in zip(backend.cond_var(theta), var):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("n", [1, 2, 5, 6, 9, 40, 41])
def test_packed_inverse_is_dtrttf_of_the_inverse(n):
    """(LL')⁻¹ in LAPACK's rectangular full packed format, odd and even orders."""
    g = np.random.default_rng(n).normal(size=(n, n))
    a = g @ g.T + n * np.eye(n)
    factor = cholesky(np.array(a, order="F"))  # a copy: dpotrf works in place
    packed = packed_cholesky_inverse(factor, np.empty(n * (n + 1) // 2))
    expected, info = dtrttf(np.asfortranarray(np.linalg.inv(a)), transr="N", uplo="L")
    assert info == 0
    np.testing.assert_allclose(packed, expected, rtol=1e-12, atol=1e-15)


def test_storage_bytes_and_choice():
    """Packed holds S⁻¹ in half the space: with a scalar first term (no Gram matrix) the dense arrays
    take half the full storage's; the default is packed from PACKED_MIN_ORDER or where full does not fit."""
    model = sparselmm.LinearMixedModel("rating ~ 1 + (1|user) + (1|item)", _ratings(5_000, 500, 301, seed=0))
    m = 301
    assert dense_bytes(model.layout, "full") == 3 * 8 * m * m
    assert dense_bytes(model.layout, "packed") == 8 * (m * m + m * (m + 1) / 2)
    assert dense_bytes(model.layout, "packed") / dense_bytes(model.layout, "full") == pytest.approx(0.5, abs=0.01)
    assert model.backend.storage == "full" and m < PACKED_MIN_ORDER
    assert choose_storage(model.layout, 2.0 * 8 * m * m) == "packed"  # only packed fits
    assert choose_storage(model.layout, np.inf) == "full"
    with pytest.raises(ValueError, match="storage must be one of"):
        BlockedBackend(model.layout, model.crossprod, storage="rfp")
