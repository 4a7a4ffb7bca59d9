"""The memory guard: a model whose factor would not fit is refused before numeric work."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sparselmm
import sparselmm.memory
from sparselmm.backends import blocked as blocked_backend
from sparselmm.backends import sparse as sparse_backend
from sparselmm.errors import ModelSizeError

from .test_sparse_backend import random_data


def crossed(n=4000, la=400, lb=300, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"y": rng.normal(size=n), "a": rng.integers(0, la, n).astype(str),
                         "b": rng.integers(0, lb, n).astype(str)})


def test_sparse_factor_refused_before_numeric_work(monkeypatch):
    calls = []
    monkeypatch.setattr(sparse_backend.SparseBackend, "_factor", lambda self, theta: calls.append(theta))
    with pytest.raises(ModelSizeError, match=r"GiB.*max_memory") as err:
        sparselmm.LinearMixedModel("y ~ 1 + (1|a) + (1|b)", crossed(), max_memory=1e6, backend="sparse")
    assert "a (400 levels)" in str(err.value) and err.value.nbytes > 1e6
    assert calls == []


def test_blocked_dense_block_refused_before_numeric_work(monkeypatch):
    calls = []
    monkeypatch.setattr(blocked_backend.BlockedBackend, "_factor", lambda self, theta: calls.append(theta))
    with pytest.raises(ModelSizeError, match=r"order 300 after a .*b \(300 levels\)") as err:
        sparselmm.LinearMixedModel("y ~ 1 + (1|a) + (1|b)", crossed(), max_memory=1e6, backend="blocked")
    assert err.value.nbytes == 8 * (300**2 + 300 * 301 // 2)  # the factor, and S⁻¹ packed: full would not fit
    assert calls == []
    # "auto" takes the blocked backend only where its dense block fits; else CHOLMOD's refusal speaks
    assert sparselmm.LinearMixedModel("y ~ 1 + (1|a) + (1|b)", crossed()).backend.name == "blocked"
    with pytest.raises(ModelSizeError, match=r"a \(400 levels\)"):
        sparselmm.LinearMixedModel("y ~ 1 + (1|a) + (1|b)", crossed(), max_memory=1e6)


def test_size_estimate_is_exact_symbolic_count():
    model = sparselmm.LinearMixedModel("y ~ 1 + (1|a) + (1|b)", crossed(), backend="sparse")
    backend = model.backend
    nnz = len(backend._lidx)
    model.objective(np.ones(2))
    L = backend.factor.L()  # CHOLMOD's relaxed supernodal factor holds at least the exact entries
    assert nnz <= L.nnz
    assert np.count_nonzero(L.data) <= nnz
    # a limit just above the estimate is accepted, just below it refused
    need = nnz * sparselmm.memory.SPARSE_BYTES_PER_ENTRY
    sparselmm.LinearMixedModel("y ~ 1 + (1|a) + (1|b)", crossed(), max_memory=need * 1.05 + 8 * 300**2,
                               backend="sparse")
    with pytest.raises(ModelSizeError):
        sparselmm.LinearMixedModel("y ~ 1 + (1|a) + (1|b)", crossed(), max_memory=need * 0.5, backend="sparse")


def test_dense_blocks_refused():
    with pytest.raises(ModelSizeError, match="backend='sparse'"):
        sparselmm.LinearMixedModel("y ~ x + (1 + x|a)", random_data(0), backend="dense", max_memory=10)


def test_default_limit_is_available_memory():
    avail = sparselmm.memory.available_memory()
    assert avail is None or avail > 0
    assert sparselmm.memory.memory_limit(None) == (float(avail) if avail else float("inf"))


def test_mixedlm_max_memory():
    df = crossed()
    df["one"] = 1
    model = sparselmm.MixedLM.from_formula("y ~ 1", df, groups="one",
                                           vc_formula={"a": "0 + C(a)", "b": "0 + C(b)"}, max_memory=1e6)
    with pytest.raises(ModelSizeError):
        model.fit()


def test_cholmod_too_large_becomes_a_size_error():
    """The issue's case: 10⁶ ratings of 150,000 users × 150,000 items. CHOLMOD's own symbolic analysis
    overflows under the natural ordering ("problem too large"); the user gets sparselmm's size error,
    with a lower bound of the factor's size."""
    from sparselmm.datasets import RATINGS_FORMULA, simulate_ratings

    data = simulate_ratings(1_000_000, 150_000, 150_000, seed=0)
    with pytest.raises(ModelSizeError, match=r"sparse Cholesky factor .*user \(150000 levels\).*more than .* GiB"):
        sparselmm.fit(RATINGS_FORMULA, data, reml=False)


def test_every_ordering_refused_by_cholmod_is_a_size_error(monkeypatch):
    """Whichever CHOLMOD error ends an ordering's analysis, the size comes from sparselmm's own count."""
    from sksparse import cholmod

    def analyze(A, **kw):
        error = cholmod.CholmodTooLargeError if kw["ordering_method"] == "natural" else cholmod.CholmodOutOfMemoryError
        raise error("problem too large")

    monkeypatch.setattr(cholmod, "analyze", analyze)
    with pytest.raises(ModelSizeError, match=r"CHOLMOD could not analyze .*a \(400 levels\).*at least [0-9,]+ entries") as err:
        sparselmm.LinearMixedModel("y ~ 1 + (1|a) + (1|b)", crossed(), backend="sparse")
    assert err.value.nbytes > 0


def test_auto_refuses_a_dense_schur_block_without_cholmod(monkeypatch):
    """Crossed factors whose block after the first term is dense and too large for memory even as a
    sparse factor: "auto" refuses at once, from the block's density, without CHOLMOD's analysis."""
    from sksparse import cholmod

    monkeypatch.setattr(cholmod, "analyze", lambda *a, **k: pytest.fail("CHOLMOD's analysis was run"))
    data = crossed(n=40_000, la=400, lb=300)  # every a meets nearly every b: the 300-block is dense
    with pytest.raises(ModelSizeError, match=r"order 300 that is 100% full: about 45,150 entries.*"
                                             r"an iteration on this machine") as err:
        sparselmm.LinearMixedModel("y ~ 1 + (1|a) + (1|b)", data, max_memory=1e6)
    assert err.value.nbytes == 45_150 * sparselmm.memory.SPARSE_BYTES_PER_ENTRY
    # backend="sparse" still lets CHOLMOD try (here: refused by its own count, after the analysis)
    monkeypatch.undo()
    with pytest.raises(ModelSizeError, match="sparse Cholesky factor"):
        sparselmm.LinearMixedModel("y ~ 1 + (1|a) + (1|b)", data, max_memory=1e6, backend="sparse")


def test_dense_cost_is_measured_on_this_machine():
    """The dense rate is a measurement (a Cholesky factorization of order 1,024), and the time of an
    iteration the m³ flops of a factorization and an inverse at that rate (times LARGE_BLOCK_SPEEDUP)."""
    from sparselmm.cost import LARGE_BLOCK_SPEEDUP, blocked_iteration_seconds, dense_rate, format_seconds

    rate = dense_rate()
    assert 1e8 < rate < 1e13  # between a slow core's reference BLAS and a large server's
    assert blocked_iteration_seconds(2000, 0, 0) == pytest.approx(2000.0 ** 3 / (rate * LARGE_BLOCK_SPEEDUP))
    assert [format_seconds(s) for s in (0.034, 5, 600, 36_000)] == ["34 ms", "5 s", "10 min", "10.0 h"]


def test_size_error_names_a_gpu_when_there_is_one(monkeypatch):
    """Where NVIDIA's driver lists a GPU, the size error says it is there and how to use it."""
    monkeypatch.setattr(sparselmm.memory, "gpu_name", lambda: "Tesla T4")
    with pytest.raises(ModelSizeError, match=r"GPU \(Tesla T4\): device=.cuda. puts"):
        sparselmm.LinearMixedModel("y ~ 1 + (1|a) + (1|b)", crossed(), max_memory=1e5, backend="blocked")
    monkeypatch.setattr(sparselmm.memory, "gpu_name", lambda: None)
    with pytest.raises(ModelSizeError) as err:
        sparselmm.LinearMixedModel("y ~ 1 + (1|a) + (1|b)", crossed(), max_memory=1e5, backend="blocked")
    assert "GPU" not in str(err.value)
