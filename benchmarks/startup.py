"""Start-up costs, each the median of fresh processes: ``python -m benchmarks.startup [--runs 5] [--lme4]``.

* ``import pandas`` against ``import sparselmm`` (``python -c``, wall time of the process);
* per backend, the first fit in a fresh process against a warm fit of the same model in that
  process (InstEval on the blocked backend, simulated nested 10⁴ rows on the dense one, simulated
  crossed 10⁴ rows on CHOLMOD), data loaded before either;
* end to end, ``sparselmm fit insteval.csv "…"`` against ``Rscript`` reading the same CSV,
  fitting it and printing the summary: lme4's (``--ddf none``) and lmerTest's, with Satterthwaite
  df (the command line's default) (``--lme4``; needs R with lme4 and lmerTest).

Writes ``benchmarks/results/startup.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

HERE = Path(__file__).resolve().parent
INSTEVAL = "y ~ 1 + service + (1|s) + (1|d) + (1|dept)"

FIRST_FIT = r"""
import sys, time, warnings
warnings.simplefilter("ignore")
import sparselmm
from sparselmm.datasets import CROSSED_FORMULA, NESTED_FORMULA, load_insteval, simulate_crossed, simulate_nested
backend = sys.argv[1]
if backend == "blocked":
    formula, data = "%s", load_insteval()
elif backend == "dense":
    formula, data = NESTED_FORMULA, simulate_nested(10_000, seed=0)
else:
    formula, data = CROSSED_FORMULA, simulate_crossed(10_000, seed=0)
t0 = time.perf_counter()
sparselmm.fit(formula, data, backend=backend)
t1 = time.perf_counter()
sparselmm.fit(formula, data, backend=backend)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
""" % INSTEVAL

#: Rscript reading the CSV and printing the fit's summary: lme4's (``lme4``) or lmerTest's, with
#: Satterthwaite df and p-values (``lmerTest``).
R_SCRIPT = r"""
suppressPackageStartupMessages(library(%s))
d <- read.csv(commandArgs(TRUE)[1], colClasses = c(s = "factor", d = "factor", dept = "factor",
                                                   service = "factor"))
m <- lmer(y ~ 1 + service + (1|s) + (1|d) + (1|dept), d)
print(summary(m))
"""


def _wall(cmd: list[str], **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def imports(runs: int) -> dict:
    out = {}
    for module in ("pandas", "sparselmm"):
        out[module] = median(_wall([sys.executable, "-c", f"import {module}"]) for _ in range(runs))
    return out


def first_fits(runs: int) -> dict:
    out = {}
    for backend in ("dense", "blocked", "sparse"):
        pairs = []
        for _ in range(runs):
            run = subprocess.run([sys.executable, "-c", FIRST_FIT, backend], check=True, capture_output=True,
                                 text=True)
            pairs.append(tuple(map(float, run.stdout.split())))
        first, warm = median(p[0] for p in pairs), median(p[1] for p in pairs)
        out[backend] = {"first": first, "warm": warm, "extra": median(p[0] - p[1] for p in pairs)}
    return out


def end_to_end(runs: int, lme4: bool) -> dict:
    from sparselmm.datasets import load_insteval

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "insteval.csv"
        load_insteval().to_csv(csv, index=False)
        cli = [sys.executable, "-m", "sparselmm.cli", "fit", str(csv), INSTEVAL, "--quiet",
               "--factor", "s", "--factor", "d", "--factor", "dept", "--factor", "service"]
        out = {"sparselmm": median(_wall(cli + ["--ddf", "none"]) for _ in range(runs)),
               "sparselmm_satterthwaite": median(_wall(cli) for _ in range(runs))}
        if lme4 and shutil.which("Rscript"):
            for package in ("lme4", "lmerTest"):
                script = Path(tmp) / f"{package}.R"
                script.write_text(R_SCRIPT % package)
                out[package] = median(_wall(["Rscript", str(script), str(csv)]) for _ in range(runs))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lme4", action="store_true", help="also time Rscript with lme4 end to end")
    args = parser.parse_args(argv)
    result = {"runs": args.runs, "imports": imports(args.runs), "first_fit": first_fits(args.runs),
              "end_to_end": end_to_end(args.runs, args.lme4)}
    (HERE / "results" / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    imp = result["imports"]
    print(f"import pandas {imp['pandas']:.3f} s, import sparselmm {imp['sparselmm']:.3f} s "
          f"(+{imp['sparselmm'] - imp['pandas']:.3f} s)")
    for backend, r in result["first_fit"].items():
        print(f"{backend:8s} first fit {r['first']:.3f} s, warm {r['warm']:.3f} s, first − warm {r['extra']:.3f} s")
    e2e = result["end_to_end"]
    print(f"end to end (InstEval CSV), lme4's summary: sparselmm --ddf none {e2e['sparselmm']:.2f} s"
          + (f", Rscript + lme4 {e2e['lme4']:.2f} s ({e2e['lme4'] / e2e['sparselmm']:.1f}×)" if "lme4" in e2e else ""))
    print(f"end to end, lmerTest's summary (Satterthwaite): sparselmm {e2e['sparselmm_satterthwaite']:.2f} s"
          + (f", Rscript + lmerTest {e2e['lmerTest']:.2f} s "
             f"({e2e['lmerTest'] / e2e['sparselmm_satterthwaite']:.1f}×)" if "lmerTest" in e2e else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
