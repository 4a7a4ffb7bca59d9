"""Bundled data sets.

``load_insteval()``: lme4's InstEval (73,421 ratings of lectures: students
``s``, instructors ``d``, departments ``dept``, ``service``, ``studage``,
``lectage``, rating ``y``). Factor columns are strings, as R's factors.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from .simulate import (
    CROSSED_FORMULA,
    NESTED_FORMULA,
    RATINGS_FORMULA,
    RATINGS_SHAPES,
    simulate_crossed,
    simulate_crossed_pieces,
    simulate_nested,
    simulate_ratings,
)

__all__ = ["CROSSED_FORMULA", "NESTED_FORMULA", "RATINGS_FORMULA", "RATINGS_SHAPES", "load_insteval",
           "simulate_crossed", "simulate_crossed_pieces", "simulate_nested", "simulate_ratings"]

_INSTEVAL_FACTORS = ["s", "d", "studage", "lectage", "service", "dept"]


def load_insteval() -> pd.DataFrame:
    """lme4's InstEval data, factors as strings (levels sort as R sorts them)."""
    with resources.files(__name__).joinpath("insteval.csv.gz").open("rb") as fh:
        return pd.read_csv(fh, compression="gzip", dtype={c: str for c in _INSTEVAL_FACTORS})
