"""Command line: ``sparselmm fit DATA "FORMULA"`` fits and prints lmerTest's summary.

DATA is a CSV file (header row) or a Parquet file (``.parquet``/``.pq``;
needs pyarrow), read whole; or a glob pattern (quoted) or a directory of such
files, read twice a piece at a time (data larger than memory). Options add the inference: ``--anova`` (type 3 F tests),
``--confint wald|profile|boot``, ``--ranova``, ``--emmeans SPECS`` (marginal means and their
pairwise comparisons, ``--adjust``); ``--weights`` and ``--offset`` name columns; ``--json`` prints everything
as JSON instead (:meth:`LMMResults.to_dict`). Progress of the stages goes to
standard error; the bootstrap shows a bar (tqdm) on long runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import SparseLMMError

DDF = ["satterthwaite", "kenward-roger", "residual", "asymptotic"]


def read_data(path: str, factors: list[str]):
    """A data frame from a CSV or Parquet file; ``factors`` columns as strings."""
    import pandas as pd

    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            data = pd.read_parquet(path)
        except ImportError as exc:
            raise SparseLMMError(f"reading Parquet needs pyarrow: pip install pyarrow ({exc})") from None
        missing = [c for c in factors if c not in data.columns]
        if missing:
            raise SparseLMMError(f"--factor: no column {missing[0]!r} in {path}")
        return data.astype({c: str for c in factors})
    return pd.read_csv(path, dtype={c: str for c in factors})


def pieces_of(path: str) -> str | None:
    """The glob of the files DATA names when they are to be read in pieces (a pattern, or a
    directory: its Parquet files, else its CSV files), else None."""
    import glob

    if glob.has_magic(path):
        return path
    if Path(path).is_dir():
        for suffix in (".parquet", ".pq", ".csv"):
            if glob.glob(str(Path(path) / f"*{suffix}")):
                return str(Path(path) / f"*{suffix}")
        raise SparseLMMError(f"no Parquet or CSV files in the directory {path}")
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparselmm", description="Fit linear mixed models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="fit an lme4 formula to a CSV or Parquet file and print the summary",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="CSV file with a header row, or a Parquet file (.parquet, .pq); or a glob "
                                "pattern or a directory of them, read in pieces")
    p.add_argument("formula", help='lme4 formula, e.g. "y ~ x + (1|g)"')
    p.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    p.add_argument("--factor", action="append", default=[], metavar="COLUMN",
                   help="read COLUMN as a categorical (string) column; repeatable")
    p.add_argument("--weights", metavar="COLUMN", help="prior weights: row i has residual variance sigma^2 / COLUMN_i")
    p.add_argument("--offset", metavar="COLUMN", help="an offset, added to the formula's offset() terms")
    p.add_argument("--backend", default="auto", choices=["auto", "dense", "sparse", "blocked"],
                   help="solver: dense per-group kernels, blocked Cholesky, CHOLMOD (default: chosen by design)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="where the blocked backend's dense block lives: cuda puts it on the GPU (CuPy); "
                        "auto does when one is found and the block is large (default: cpu)")
    p.add_argument("--method", default="auto", help="optimizer: auto, newton, bfgs, lbfgs, powell, nelder-mead")
    p.add_argument("--ddf", default="satterthwaite", choices=DDF + ["none"],
                   help="denominator degrees of freedom of the t and F tests (default: satterthwaite; "
                        "none: lme4's summary, no tests)")
    p.add_argument("--anova", action="store_true", help="type 3 F tests of the fixed-effect terms")
    p.add_argument("--ranova", action="store_true", help="likelihood-ratio tests of the random terms")
    p.add_argument("--emmeans", metavar="SPECS",
                   help='estimated marginal means and their pairwise comparisons, e.g. "treatment" or '
                        '"~ treatment | sex" (df by --ddf; residual or none: Kenward-Roger)')
    p.add_argument("--adjust", default="tukey", help="p-value adjustment of the pairwise comparisons (default tukey)")
    p.add_argument("--confint", choices=["wald", "profile", "boot"], help="confidence intervals")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--nboot", type=int, default=1000, help="bootstrap replicates for --confint boot")
    p.add_argument("--seed", type=int, default=None, help="random seed of the bootstrap")
    p.add_argument("--jobs", type=int, default=1, help="worker processes of the bootstrap")
    p.add_argument("--json", action="store_true", help="print the fit and all requested inference as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress messages on standard error")
    return parser


class _Stages:
    """``name ... 1.23 s`` lines on standard error."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def run(self, name: str, work):
        if self.quiet:
            return work()
        print(f"{name} ...", end="", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            return work()
        finally:
            print(f" {time.perf_counter() - start:.2f} s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 < args.level < 1:
        print(f"sparselmm: error: --level must be in (0, 1), not {args.level}", file=sys.stderr)
        return 2
    if args.nboot < 1 or args.jobs < 1:
        print("sparselmm: error: --nboot and --jobs must be positive", file=sys.stderr)
        return 2
    if args.ddf == "none" and args.anova:
        print("sparselmm: error: --anova needs a --ddf method", file=sys.stderr)
        return 2
    ddf = None if args.ddf == "none" else args.ddf
    stages = _Stages(args.quiet)
    boot = {"n": args.nboot, "seed": args.seed, "n_jobs": args.jobs} if args.confint == "boot" else {}
    try:
        from . import fit
        from .report import format_table

        data = pieces_of(args.data)
        if data is not None and args.factor:
            raise SparseLMMError("--factor applies to one file read whole; files read in pieces keep their types")
        if data is None:
            data = stages.run(f"reading {Path(args.data).name}", lambda: read_data(args.data, args.factor))
        rows = f"{len(data)} rows" if not isinstance(data, str) else data
        result = stages.run(f"fitting {rows}",
                            lambda: fit(args.formula, data, reml=not args.ml, method=args.method,
                                        backend=args.backend, verbose=not args.quiet, weights=args.weights,
                                        offset=args.offset, device=args.device))
        means = None
        if args.emmeans:
            emm_ddf = args.ddf if args.ddf in ("satterthwaite", "kenward-roger", "asymptotic") else "kenward-roger"
            means = stages.run("marginal means", lambda: (
                result.emmeans(args.emmeans, ddf=emm_ddf, level=args.level),
                result.pairs(args.emmeans, adjust=args.adjust, ddf=emm_ddf)))
        if args.json:
            out = stages.run("inference", lambda: result.to_dict(
                ddf=ddf, anova=args.anova, confint=args.confint, level=args.level, ranova=args.ranova,
                **boot))
            if means is not None:
                out["emmeans"], out["pairs"] = (json.loads(t.to_json(orient="records")) for t in means)
            print(json.dumps(out, indent=2))
            return 0
        text = [str(stages.run("summary", lambda: result.summary(ddf)))]
        if args.anova:
            table = stages.run("anova", lambda: result.anova(3, args.ddf))
            text += ["", f"Type III Analysis of Variance Table with {args.ddf} df:", format_table(table)]
        if args.ranova:
            text += ["", "ANOVA-like table for random-effects:", format_table(stages.run("ranova", result.ranova))]
        if means is not None:
            for title, table in zip(("Estimated marginal means:", "Pairwise comparisons:"), means):
                text += ["", title, table.to_string(index=False), *table.attrs["notes"]]
        if args.confint:
            table = stages.run(f"{args.confint} intervals",
                               lambda: result.confint(level=args.level, method=args.confint, **boot))
            text += ["", f"Confidence intervals ({args.confint}):", format_table(table)]
        print("\n".join(text))
    except (SparseLMMError, OSError, ValueError, KeyError) as exc:
        print(f"sparselmm: error: {exc}", file=sys.stderr)
        return 2
    return 0


def entry() -> None:
    """The command (``sparselmm``, ``python -m sparselmm.cli``): :func:`main`, its output flushed, then out
    without the interpreter's teardown (freeing what pandas, SciPy and formulaic loaded: 0.3 s of
    an InstEval fit's 1.7 s here, medians of 8 interleaved runs). Nothing is left to it: the
    output is written, the bootstrap's workers are joined, no file stays open."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe (``| head``): the output it wanted is out
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    entry()
