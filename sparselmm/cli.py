"""Command line: ``sparselmm fit DATA.csv "FORMULA" [--ml]`` prints the summary."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from . import fit
from .errors import SparseLMMError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparselmm", description="Fit linear mixed models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="fit an lme4 formula to a CSV file and print the summary")
    p.add_argument("data", help="CSV file with a header row")
    p.add_argument("formula", help='lme4 formula, e.g. "y ~ x + (1|g)"')
    p.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    p.add_argument("--factor", action="append", default=[], metavar="COLUMN",
                   help="read COLUMN as a categorical (string) column; repeatable")
    p.add_argument("--method", default="auto", help="optimizer: auto, newton, bfgs, lbfgs, powell, nelder-mead")
    args = parser.parse_args(argv)
    try:
        data = pd.read_csv(args.data, dtype={c: str for c in args.factor})
        result = fit(args.formula, data, reml=not args.ml, method=args.method)
    except (SparseLMMError, OSError, ValueError) as exc:
        print(f"sparselmm: error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
