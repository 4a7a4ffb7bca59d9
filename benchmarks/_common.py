"""Shared data for the benchmarks: data sets by name, cached per process, and JIT warm-up.

Data set names are ``"insteval"`` (lme4's InstEval, 73,421 rows) and
``"crossed_<n>"`` / ``"nested_<n>"`` (:func:`sparselmm.datasets.simulate_crossed`
/ :func:`~sparselmm.datasets.simulate_nested` with ``n`` rows, seed 0).
"""

from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from sparselmm import LinearMixedModel
from sparselmm.backends import BlockedBackend
from sparselmm.datasets import (
    CROSSED_FORMULA,
    NESTED_FORMULA,
    load_insteval,
    simulate_crossed,
    simulate_nested,
)
from sparselmm.kernels import PARALLEL_MIN_WORK

INSTEVAL_FORMULA = "y ~ 1 + service + (1|s) + (1|d) + (1|dept)"

SIZES = [10_000, 100_000, 1_000_000]

def save_results(out: str | Path, name: str, data, report: str) -> None:
    """``name.json`` (``data``) and ``name.md`` (``report``, also printed) in the directory ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=1))
    (out / f"{name}.md").write_text(report)
    print(report)


# Generous: the slowest fit (10⁶-row crossed design) takes seconds; other systems minutes.
FIT_TIMEOUT = 1800.0


class OneSample:
    """asv settings of a benchmark whose every call is one whole fit (or more): one sample, no
    warm-up rounds (``setup`` warms the JIT and loads the data)."""

    timeout = FIT_TIMEOUT
    number = 1
    repeat = 1
    rounds = 1
    warmup_time = 0.0


@lru_cache(maxsize=4)
def dataset(name: str) -> tuple[str, pd.DataFrame]:
    """(formula, data frame) of a named data set."""
    if name == "insteval":
        return INSTEVAL_FORMULA, load_insteval()
    kind, _, n = name.partition("_")
    if kind == "crossed":
        return CROSSED_FORMULA, simulate_crossed(int(n), seed=0)
    if kind == "nested":
        return NESTED_FORMULA, simulate_nested(int(n), seed=0)
    raise ValueError(f"unknown data set {name!r}")


def warm_jit() -> None:
    """Compile (or load from cache) the Numba kernels on a small model of each backend.

    Called from ``setup`` so that compile time never lands in a timing. The
    model has enough groups (and leading columns of L) for the parallel
    kernels as well as their serial twins (``kernels.PARALLEL_MIN_WORK``).
    """
    import numba  # noqa: F401 (started, so that the parallel kernels run here: kernels.COLD_MIN_WORK)

    data = simulate_nested(12 * PARALLEL_MIN_WORK, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for backend in ("dense", "sparse"):
            model = LinearMixedModel(NESTED_FORMULA, data, backend=backend)
            model.objective(model.theta0)
            model.fit()
        model = LinearMixedModel(CROSSED_FORMULA, simulate_crossed(10_000, seed=0))
        for parallel in (False, True):  # the blocked kernels and their serial twins
            model.backend = BlockedBackend(model.layout, model.crossprod, parallel=parallel)
            model.fit()


def two_thetas(model: LinearMixedModel) -> list[np.ndarray]:
    """Two distinct θ in the domain (the backends cache the factor of the last θ)."""
    theta0 = np.asarray(model.theta0, dtype=float)
    return [theta0, 0.5 * theta0]
