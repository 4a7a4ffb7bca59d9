"""The references of ``scripts/make_study_references.R`` (tests/data/study): prior weights, offsets,
marginal means and ranova, from lme4 converged tightly."""

from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

import sparselmm

STUDY = Path(__file__).parent / "data" / "study"

#: The factor columns of each data set (read as strings, as R's factor() of the CSV's text).
FACTORS = {
    "sleepstudy_w": ["Subject", "g3"],
    "penicillin_w": ["plate", "sample"],
    "scotssec_cells": ["primary", "second", "sex"],
    "exam_w": ["sex", "vr", "school"],
    "machines": ["Machine", "Worker"],
    "cake_f": ["recipe", "temperature", "replicate"],
    "oats": ["Variety", "Block"],
}

#: The weighted and offset fits: (name, criterion)
FITS = [(name, kind) for name in ("sleepstudy_w", "penicillin_w", "scotssec_cells", "exam_w")
        for kind in ("reml", "ml")]


def load_json(name: str) -> dict:
    return json.loads((STUDY / f"{name}.json").read_text())


@lru_cache(maxsize=None)
def load_csv(name: str) -> pd.DataFrame:
    return pd.read_csv(STUDY / f"{name}.csv", dtype={c: str for c in FACTORS[name]})


def data_of(name: str) -> pd.DataFrame:
    """A fresh copy (tests must not share a frame they could modify)."""
    return load_csv(name).copy()


def insteval_weights(n: int) -> np.ndarray:
    """The InstEval weights of the script: 0.5 + (i mod 7)/4 for rows i = 1..n."""
    return 0.5 + (np.arange(1, n + 1) % 7) / 4


_FITS: dict = {}


def study_fit(name: str, kind: str, **options):
    """(reference, data, our fit), fitted once per session."""
    key = (name, kind, tuple(sorted(options.items())))
    if key not in _FITS:
        ref = load_json(f"{name}_{kind}")
        data = data_of(ref["dataset"][:-4])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sparselmm.SingularFitWarning)
            fit = sparselmm.fit(ref["formula"], data, reml=kind == "reml", weights=ref["weights"],
                                offset=ref["offset"], **options)
        _FITS[key] = (ref, data, fit)
    return _FITS[key]
