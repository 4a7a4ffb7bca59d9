"""Inference on InstEval side by side: sparselmm against lme4/lmerTest.

    python -m benchmarks.compare_inference [--nboot 1000] [--jobs 2] [--lme4]

Times, in this process (after a warm-up: Numba's kernels and the first use
of the inference modules are excluded, as for lme4 R's startup and package
loading), the REML and ML fits, the Satterthwaite coefficient table,
``confint(method="profile")`` and ``nboot`` bootstrap refits, and
compares them with lme4's times and numbers for the same work in
``benchmarks/results/lme4_inference.json``. ``--lme4`` first reruns
``benchmarks/lme4_inference.R`` to remake that file (R with lme4 and
lmerTest; up to ~40 minutes: lme4's profile alone takes minutes). Writes
``benchmarks/results/inference_comparison.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from ._common import warm_jit
from .bench_inference import _fit, coef_table_from_scratch, profile_from_scratch
from .compare import machine

HERE = Path(__file__).resolve().parent
LME4 = HERE / "results" / "lme4_inference.json"
# lme4's names (oldNames = TRUE in its confint) for ours
LME4_NAMES = {".sig01": "sd_(Intercept)|s", ".sig02": "sd_(Intercept)|d", ".sig03": "sd_(Intercept)|dept",
              ".sigma": "sigma"}


def _timed(work):
    start = time.perf_counter()
    value = work()
    return value, time.perf_counter() - start


def ours(nboot: int, jobs: int, progress=print) -> dict:
    warm_jit()
    coef_table_from_scratch(_fit(reml=True))  # first use of the inference modules (imports), untimed
    out = {}
    reml, out["reml_fit"] = _timed(lambda: _fit(reml=True))
    progress(f"REML fit {out['reml_fit']:.2f} s")
    table, out["satterthwaite"] = _timed(lambda: coef_table_from_scratch(reml))
    progress(f"Satterthwaite table {out['satterthwaite']:.2f} s")
    ml, out["ml_fit"] = _timed(lambda: _fit(reml=False))
    ci, out["profile"] = _timed(lambda: profile_from_scratch(ml))
    progress(f"ML fit {out['ml_fit']:.2f} s, profile intervals {out['profile']:.2f} s")
    boot, out["bootstrap"] = _timed(lambda: reml.bootstrap(n=nboot, seed=1, n_jobs=jobs))
    progress(f"{nboot} bootstrap refits on {jobs} workers {out['bootstrap']:.1f} s")
    return {"seconds": out, "satterthwaite": table, "profile": ci, "boot_converged": int(boot.converged.sum())}


def compare(mine: dict, lme4: dict, nboot: int, jobs: int) -> dict:
    s = mine["seconds"]
    ref_sat = lme4["satterthwaite_summary"]["coefficients"]
    df_err = max(abs(mine["satterthwaite"].loc[k, "df"] / v["df"] - 1) for k, v in ref_sat.items())
    prof = lme4["profile_confint"]
    ci_err = None
    if prof.get("status") == "ok":
        ci = mine["profile"]
        ci_err = max(abs(ci.loc[LME4_NAMES.get(k, k)].to_numpy() / [v["lower"], v["upper"]] - 1).max()
                     for k, v in prof["intervals"].items())
    boot = lme4["bootmer"]
    lme4_boot = boot["seconds_per_replicate"] * nboot
    rows = [
        ("REML fit", s["reml_fit"], lme4["reml_fit"]["seconds"], ""),
        ("Satterthwaite table", s["satterthwaite"], lme4["satterthwaite_summary"]["seconds"],
         f"df vs lmerTest: max rel. diff {df_err:.1e}; table / our fit {s['satterthwaite'] / s['reml_fit']:.2f}"),
        ("ML fit", s["ml_fit"], lme4["ml_fit"]["seconds"], ""),
        ("profile confint (ML)", s["profile"], prof.get("seconds"),
         f"intervals vs lme4: max rel. diff {ci_err:.1e}" if ci_err is not None else prof.get("status", "")),
        (f"bootstrap, {nboot} refits", s["bootstrap"], lme4_boot,
         f"ours: {jobs} workers, {mine['boot_converged']}/{nboot} converged; lme4: "
         f"{boot['nsim']} replicates ({boot['seconds']:.0f} s) times {nboot / boot['nsim']:.0f}, serial"),
    ]
    return {"machine": machine(), "lme4_versions": lme4.get("versions"), "lme4_started": lme4.get("started"),
            "rows": [{"work": w, "sparselmm_s": a, "lme4_s": b, "ratio": (b / a if b else None), "note": n}
                     for w, a, b, n in rows]}


def markdown(result: dict) -> str:
    lines = ["| InstEval (73,421 rows) | sparselmm | lme4/lmerTest | lme4 / sparselmm | note |",
             "|---|---:|---:|---:|---|"]
    for r in result["rows"]:
        lme4 = f"{r['lme4_s']:.1f} s" if r["lme4_s"] else "—"
        ratio = f"{r['ratio']:.0f}×" if r["ratio"] else "—"
        lines.append(f"| {r['work']} | {r['sparselmm_s']:.2f} s | {lme4} | {ratio} | {r['note']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nboot", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--lme4", action="store_true", help="rerun benchmarks/lme4_inference.R first")
    args = parser.parse_args(argv)
    if args.lme4:
        subprocess.run(["Rscript", str(HERE / "lme4_inference.R")], cwd=HERE.parent, check=True)
    lme4 = json.loads(LME4.read_text())
    result = compare(ours(args.nboot, args.jobs), lme4, args.nboot, args.jobs)
    (HERE / "results" / "inference_comparison.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (HERE / "results" / "inference_comparison.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
