"""The comparison machinery of ``benchmarks/compare.py`` on one tiny workload."""

from __future__ import annotations

import pytest

from sparselmm.datasets import simulate_nested

pytest.importorskip("statsmodels")
compare = pytest.importorskip("benchmarks.compare")

TINY = compare.Workload("nested", 2000)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    systems = ["sparselmm", "statsmodels"] + (["lme4"] if compare.lme4_available() else [])
    return systems, compare.compare([TINY], systems, timeout=120.0, progress=lambda m: None)


def test_row_has_numbers(results):
    systems, rows = results
    (row,) = rows
    assert row["rows"] == 2000 and row["levels"] == "200"
    for s in systems:
        fit = row["fits"][s]
        assert fit["status"] == "ok", fit
        assert fit["time"] > 0 and fit["peak_mb"] > 10 and fit["converged"]


def test_objectives_agree(results):
    systems, (row,) = results
    ours = row["fits"]["sparselmm"]["objective"]
    for s in systems[1:]:
        assert row["fits"][s]["objective"] == pytest.approx(ours, rel=1e-4)


def test_table_lists_every_system(results):
    systems, rows = results
    text = compare.table(rows, systems, compare.machine(), 120.0)
    line = next(l for l in text.splitlines() if l.startswith("| nested_2000"))
    assert line.count("|") == 3 + 3 + 5 * (len(systems) - 1) + 1
    assert "—" not in line  # every cell filled


@pytest.mark.parametrize("system", ["statsmodels", "lme4"])
def test_tiny_timeout_is_reported(system, tmp_path):
    if system == "lme4" and not compare.lme4_available():
        pytest.skip("Rscript with lme4 not available")
    fit = compare.run_system(system, TINY, timeout=0.01, workdir=tmp_path)
    assert fit["status"] == "timeout"
    assert compare._fmt_time(fit) == "did not finish in 0.01 s"


def test_not_run_after_timeout(monkeypatch):
    monkeypatch.setattr(compare, "run_system", lambda s, w, *a: dict(status="timeout", time=1.0))
    monkeypatch.setattr(compare.Workload, "load", lambda self: simulate_nested(100, seed=0))
    work = [compare.Workload("nested", 100), compare.Workload("nested", 1000)]
    rows = compare.compare(work, ["statsmodels"], 1.0, progress=lambda m: None)
    assert rows[0]["fits"]["statsmodels"]["status"] == "timeout"
    assert rows[1]["fits"]["statsmodels"] == dict(status="skipped", message="not run (did not finish at 100 rows)")

