"""The main job: fit lme4's InstEval model and print its summary and fit time.

Run with ``python -m sparselmm.demo`` (or ``make demo``).
"""

from __future__ import annotations

import time

from . import fit
from .datasets import load_insteval

FORMULA = "y ~ 1 + service + (1|s) + (1|d) + (1|dept)"


def main() -> None:
    data = load_insteval()
    start = time.perf_counter()
    result = fit(FORMULA, data, reml=True)
    seconds = time.perf_counter() - start
    print(result.summary())
    print(f"\nInstEval: {len(data)} rows, REML fit in {seconds:.2f} s "
          f"({result.nfactor} factorizations of the {result.model.layout.q} x {result.model.layout.q} system)")


if __name__ == "__main__":
    main()
