"""No kernel compiles during a fit: ``python -m sparselmm.compile`` (run by ``make install`` and
``make test``) has compiled every signature the package uses, the serial ones ahead of time.

The fits below are not :mod:`sparselmm.compile`'s battery: the reference models, the synthetic
designs on every backend, the inference after a fit and statsmodels' door, in a fresh process
whose Numba dispatchers count what they compile.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import sparselmm
from sparselmm import kernels

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


MODERATE = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import sparselmm
from sparselmm.datasets import CROSSED_FORMULA, NESTED_FORMULA, load_insteval, simulate_crossed, simulate_nested
out = {}
for backend, formula, data in [("dense", NESTED_FORMULA, simulate_nested(10_000, seed=0)),
                               ("blocked", "y ~ 1 + service + (1|s) + (1|d) + (1|dept)", load_insteval()),
                               ("sparse", CROSSED_FORMULA, simulate_crossed(10_000, seed=0))]:
    r = sparselmm.fit(formula, data, backend=backend)
    out[backend] = [r.objective, *r.fe_params, *r.theta]
out["numba"] = "numba" in sys.modules
print(json.dumps(out))
"""


def _moderate(env=None) -> dict:
    run = subprocess.run([sys.executable, "-c", MODERATE], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, **(env or {})))
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def test_moderate_fits_run_ahead_of_time_kernels_without_numba():
    """The serial kernels come from the modules ``python -m sparselmm.compile`` built ahead of time:
    a fit of moderate size (each backend) never imports Numba, and agrees with Numba's kernels."""
    aot = _moderate()
    assert aot.pop("numba") is False
    jit = _moderate({"SPARSELMM_NO_AOT": "1"})
    assert jit.pop("numba") is True
    for backend, values in aot.items():
        np.testing.assert_allclose(values, jit[backend], rtol=1e-9, err_msg=backend)


def test_import_is_light():
    """``import sparselmm`` loads no Numba, CHOLMOD, formulaic, SciPy optimizers or statistics, nor
    the statsmodels door."""
    code = ("import sys, sparselmm; print(sorted(m for m in ('numba', 'sksparse', 'formulaic', 'scipy.optimize', "
            "'scipy.stats', 'statsmodels', 'sparselmm.mixedlm', 'sparselmm.kernels.dense') if m in sys.modules "
            "and type(sys.modules[m]).__name__ != '_LazyModule'))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_a_nested_fit_loads_no_other_backends_kernels():
    code = r"""
import sys, warnings
warnings.simplefilter("ignore")
import sparselmm
from sparselmm.datasets import NESTED_FORMULA, simulate_nested
sparselmm.fit(NESTED_FORMULA, simulate_nested(20_000, seed=0))
print(sorted(m for m in ("sksparse", "sparselmm.kernels.blocked", "sparselmm.kernels.sparse") if m in sys.modules))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_a_broken_ahead_of_time_build_falls_back_to_numba(tmp_path, monkeypatch):
    """An AOT index naming modules that are not there (a stale or half-finished build) costs nothing
    but the speed of start-up: the kernels come from Numba."""
    index = tmp_path / "_aot.json"
    entry = [[["<i8", 1, "C", False, True], "int64"], "_aot_missing", "counting_order__0"]
    index.write_text(json.dumps({"python": platform.python_version(), "kernels": {"counting_order": [entry]}}))
    monkeypatch.setattr(kernels, "AOT_INDEX", index)
    monkeypatch.setattr(kernels, "_AOT", None)
    monkeypatch.setattr(kernels, "_HANDLES", {})
    assert kernels._aot_table() == {}
    data = pd.read_csv(DATA / "sleepstudy.csv", dtype={"Subject": str})
    fit = sparselmm.fit("Reaction ~ Days + (Days|Subject)", data)
    assert fit.objective == pytest.approx(1743.6282719, abs=1e-6)  # lme4's REML criterion
