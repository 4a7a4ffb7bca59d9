"""No kernel compiles during a fit: ``python -m sparselmm.compile`` (run by ``make install`` and
``make test``) has cached every signature the package uses.

The fits below are not :mod:`sparselmm.compile`'s battery: the reference models, the synthetic
designs on every backend, the inference after a fit and statsmodels' door, in a fresh process
whose Numba dispatchers count what they compile.
"""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import DATA

SCRIPT = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import pandas as pd
import sparselmm
from sparselmm.compile import cache_counts
from sparselmm.datasets import CROSSED_FORMULA, NESTED_FORMULA, simulate_crossed, simulate_nested

data = sys.argv[1]
sleep = pd.read_csv(f"{data}/sleepstudy.csv", dtype={"Subject": str})
pen = pd.read_csv(f"{data}/penicillin.csv", dtype={"plate": str, "sample": str})
pastes = pd.read_csv(f"{data}/pastes.csv", dtype={"batch": str, "cask": str, "sample": str})
for reml in (True, False):
    r = sparselmm.fit("Reaction ~ Days + (Days|Subject)", sleep, reml=reml)
    r.random_effects_sd, r.coef_table(), r.anova()
    sparselmm.fit("Reaction ~ Days + (Days||Subject)", sleep, reml=reml).coef_table("asymptotic")
    sparselmm.fit("Reaction ~ Days + (Days||Subject)", sleep).coef_table("kenward-roger")
    sparselmm.fit("diameter ~ 1 + (1|plate) + (1|sample)", pen, reml=reml).random_effects_sd
    sparselmm.fit("strength ~ 1 + (1|batch/cask)", pastes, reml=reml)
r = sparselmm.fit("Reaction ~ Days + (1|Subject)", sleep, reml=False)
r.confint(method="profile"), r.bootstrap(n=3, seed=1)
for n in (2_000, 20_000):
    for backend in ("dense", "sparse"):
        sparselmm.fit(NESTED_FORMULA, simulate_nested(n, seed=0), backend=backend).random_effects_sd
    for backend in ("blocked", "sparse"):
        sparselmm.fit(CROSSED_FORMULA, simulate_crossed(n, seed=0), backend=backend).random_effects_sd
try:
    from sparselmm import MixedLM
    MixedLM.from_formula("Reaction ~ Days", sleep, groups="Subject", re_formula="1 + Days").fit()
except ImportError:
    pass
hits, compiled = cache_counts()
print(json.dumps({"hits": hits, "compiled": compiled}))
"""


def test_no_kernel_compiles_during_fits():
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(DATA)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    counts = json.loads(run.stdout.splitlines()[-1])
    assert counts["compiled"] == [], (
        "Numba compiled these kernels inside fits: run `python -m sparselmm.compile` (make install does), "
        "or add the path that needs them to its workloads:\n" + "\n".join(counts["compiled"]))
    assert counts["hits"] > 20  # the kernels came from the cache
