"""What a study reports after the fit, side by side with lme4/emmeans on InstEval, in one run.

    python -m benchmarks.compare_study [--no-r]

Times here (after a warm-up of the same kind: Numba's kernels and first imports excluded, as R's
package loading is) the ML fit of ``y ~ service + (1|s) + (1|d) + (1|dept)`` without and with prior
weights (wᵢ = 0.5 + (i mod 7)/4; medians of 3), and ``emmeans("service")`` + ``pairs("service")``
of the REML fit from scratch with Kenward–Roger (emmeans' default for lmer) and Satterthwaite df;
then runs ``benchmarks/lme4_study.R`` (lme4, lmerTest, emmeans) for the same work, unless ``--no-r``
(then the last file of R's times is read). Writes ``benchmarks/results/study_comparison.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np

import sparselmm

from ._common import dataset, save_results, warm_jit
from .compare import machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
R_FILE = RESULTS / "lme4_study.json"


def insteval_weights(n: int) -> np.ndarray:
    return 0.5 + (np.arange(1, n + 1) % 7) / 4


def _fit(weights=None, reml=False):
    formula, data = dataset("insteval")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sparselmm.fit(formula, data, reml=reml, weights=weights)


def emmeans_and_pairs(result, ddf: str):
    """The marginal means of service and their pairs, from scratch (no cached df machinery)."""
    result.__dict__.pop("_ddf_cache", None)
    return result.emmeans("service", ddf=ddf), result.pairs("service", ddf=ddf)


def _median_seconds(work, times: int = 3) -> float:
    out = []
    for _ in range(times):
        start = time.perf_counter()
        work()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def ours() -> dict:
    warm_jit()
    _, data = dataset("insteval")
    w = insteval_weights(len(data))
    _fit(), _fit(w)  # warm-up
    unweighted = _median_seconds(_fit)
    weighted = _median_seconds(lambda: _fit(w))
    reml = _fit(reml=True)
    emmeans_and_pairs(reml, "satterthwaite")  # first use of the modules, untimed
    out = {"ml_fit": unweighted, "ml_fit_weighted": weighted}
    for ddf in ("kenward-roger", "satterthwaite"):
        start = time.perf_counter()
        means, pairs = emmeans_and_pairs(reml, ddf)
        out[f"emmeans_pairs_{ddf}"] = time.perf_counter() - start
        out[f"{ddf}_means"] = means[["emmean", "SE", "df"]].to_dict("list")
        out[f"{ddf}_pairs_p"] = pairs["p.value"].tolist()
    out["objective"], out["objective_weighted"] = _fit().objective, _fit(w).objective
    return out


def run_r() -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    proc = subprocess.run(["Rscript", str(HERE / "lme4_study.R"), str(R_FILE)], cwd=HERE.parent,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr)
        return None
    return json.loads(R_FILE.read_text())


def report(mine: dict, r: dict | None) -> str:
    m = machine()
    lines = ["# After the fit: weights and marginal means on InstEval (73,421 rows)", "",
             f"{m['cpu']}, {m['cores']} cores, {m['ram']}; load {m['load']}. One run; sparselmm's fits medians "
             "of 3, warm-ups excluded on both sides.", "",
             "| work | sparselmm | lme4 / emmeans | ratio |", "|---|---:|---:|---:|"]

    def row(name, ours_s, theirs_s, note=""):
        ratio = f"{theirs_s / ours_s:.0f}×" if theirs_s else ""
        theirs = f"{theirs_s:.2f} s" if theirs_s else note
        lines.append(f"| {name} | {ours_s:.3f} s | {theirs} | {ratio} |")

    rs = (lambda k: r[k]["seconds"]) if r else (lambda k: None)
    row("ML fit", mine["ml_fit"], rs("ml_fit"))
    row("ML fit, prior weights", mine["ml_fit_weighted"], rs("ml_fit_weighted"))
    row("emmeans + pairs, Kenward–Roger", mine["emmeans_pairs_kenward-roger"], None,
        "not feasible (pbkrtest: n × n, 43 GB)")
    row("emmeans + pairs, Satterthwaite", mine["emmeans_pairs_satterthwaite"], rs("emmeans_pairs_satterthwaite"))
    if r:
        lines.append(f"| emmeans + pairs, emmeans' default (asymptotic df above 3,000 rows) | | "
                     f"{r['emmeans_pairs_default']['seconds']:.2f} s | |")
    ratio = mine["ml_fit_weighted"] / mine["ml_fit"]
    lines += ["", f"Weighted over unweighted ML fit: {ratio:.2f}×."]
    if r:
        dev = mine["objective_weighted"] - r["ml_fit_weighted"]["deviance"]
        df = max(abs(a / b - 1) for a, b in zip(mine["satterthwaite_means"]["df"],
                                               r["emmeans_pairs_satterthwaite"]["df"]))
        lines.append(f"Weighted deviance: ours − lme4's = {dev:.2e}; Satterthwaite df of the means agree to "
                     f"{df:.1e} relative. R {r['R'].split()[2]}, lme4 {r['lme4']}, emmeans {r['emmeans']}.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-r", action="store_true", help="do not rerun R: read its last times")
    args = parser.parse_args(argv)
    mine = ours()
    r = json.loads(R_FILE.read_text()) if args.no_r and R_FILE.exists() else (None if args.no_r else run_r())
    save_results(RESULTS, "study_comparison", {"sparselmm": mine, "lme4": r, "machine": machine()},
                 report(mine, r))


if __name__ == "__main__":
    main()
