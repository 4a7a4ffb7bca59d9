"""The reference zoo: lme4's fits, and ours of the same data, made once per session."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

import sparselmm
from sparselmm.datasets import load_insteval

DATA = Path(__file__).parent / "data"

# (case, model id) of every reference fit; each has a _reml and an _ml file.
MODELS = [
    ("dyestuff", "dyestuff"),
    ("sleepstudy", "sleepstudy_corr"),
    ("sleepstudy", "sleepstudy_diag"),
    ("penicillin", "penicillin"),
    ("pastes", "pastes"),
    ("insteval", "insteval"),
]
REFS = [(case, mid, kind) for case, mid in MODELS for kind in ("reml", "ml")]
REF_IDS = [f"{mid}-{kind}" for _, mid, kind in REFS]


def load_reference(model_id: str, kind: str) -> dict:
    return json.loads((DATA / f"{model_id}_{kind}.json").read_text())


def load_data(case: str, ref: dict) -> pd.DataFrame:
    if case == "insteval":
        return load_insteval()
    factors = [c for c, how in ref["columns"].items() if how == "factor"]
    return pd.read_csv(DATA / f"{case}.csv", dtype={c: str for c in factors})


_FITS: dict = {}


def reference_fit(case: str, model_id: str, kind: str):
    """(lme4 reference, data, our fit) — fitted once per session."""
    key = (model_id, kind)
    if key not in _FITS:
        ref = load_reference(model_id, kind)
        data = load_data(case, ref)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sparselmm.SingularFitWarning)
            result = sparselmm.fit(ref["formula"], data, reml=kind == "reml")
        _FITS[key] = (ref, data, result)
    return _FITS[key]


@pytest.fixture(params=REFS, ids=REF_IDS)
def zoo(request):
    return reference_fit(*request.param)
