"""From a formula and a data frame to the model's arrays (lme4 conventions).

Fixed effects go through formulaic with treatment contrasts (first level in
sorted order is the reference) and are renamed as R names them
(``(Intercept)``, ``service1``, ``age:SexMale``). Each random term's model
columns also go through formulaic; its grouping factor becomes integer codes
over the levels that occur, sorted (categorical columns keep their category
order), interactions ``a:b`` ordered a-major as R's ``a:b`` does. Terms are
sorted by decreasing number of levels, as lme4 sorts them.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import formulaic
import numpy as np
import pandas as pd

from .design import ReTerm
from .errors import DataError, FormulaError
from .formula import ParsedFormula, RandomTerm, parse_formula

_MISSING = ("drop", "raise")


def r_name(column: str) -> str:
    """R's name of a formulaic model-matrix column."""
    if column == "Intercept":
        return "(Intercept)"
    column = re.sub(r"\[T\.(.*?)\]", r"\1", column)
    return re.sub(r"\[(.*?)\]", r"\1", column)


@dataclass(frozen=True, eq=False)
class ModelFrame:
    """The arrays of one model, with what is needed to encode new data.

    Attributes
    ----------
    formula : ParsedFormula
    y : ndarray, shape (n,)
    X : ndarray, shape (n, p)
    fe_names : list of str
        lme4's names of the fixed-effects columns.
    terms : list of ReTerm
        Random-effect terms, sorted as lme4 sorts them.
    fixed_spec : formulaic.ModelSpec
        Encodes the fixed part of new data exactly as the fitted data.
    term_specs : list of (formulaic.ModelSpec, RandomTerm)
        Same for each random term's model columns.
    row_index : pandas.Index
        Index labels of the rows used (complete cases).
    """

    formula: ParsedFormula
    y: np.ndarray
    X: np.ndarray
    fe_names: list[str]
    terms: list[ReTerm]
    fixed_spec: object
    term_specs: list
    row_index: pd.Index

    @property
    def n(self) -> int:
        return len(self.y)


def _variables(parsed: ParsedFormula) -> list[str]:
    names: list[str] = []
    for text in (parsed.response, parsed.fixed, *(t.expr for t in parsed.random)):
        try:
            names += sorted(formulaic.Formula(text).required_variables)
        except Exception as exc:  # formulaic's own parse errors
            raise FormulaError(f"cannot parse {text!r}: {exc}") from exc
    for t in parsed.random:
        names += list(t.factors)
    return list(dict.fromkeys(names))


def _complete_rows(data: pd.DataFrame, columns: list[str], missing: str) -> pd.DataFrame:
    """Rows without missing values in ``columns`` (never modifies ``data``)."""
    if missing not in _MISSING:
        raise ValueError(f"missing must be one of {_MISSING}, not {missing!r}")
    na = data[columns].isna()
    bad = na.any(axis=1)
    if not bad.any():
        return data
    counts = na.sum()
    detail = ", ".join(f"{c!r} ({k})" for c, k in counts[counts > 0].items())
    if missing == "raise":
        raise DataError(f"missing values in column(s) {detail}; use missing='drop' to drop those rows")
    warnings.warn(f"dropped {int(bad.sum())} of {len(data)} rows with missing values in {detail}", stacklevel=3)
    return data.loc[~bad.to_numpy()]


def _codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes over the levels that occur, in sorted (or category) order."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.cat.remove_unused_categories()
        return column.cat.codes.to_numpy().astype(np.int64), pd.Index(column.cat.categories)
    codes, levels = pd.factorize(column, sort=True)
    return codes.astype(np.int64), pd.Index(levels)


def grouping_codes(data: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Codes and level labels of the interaction of ``factors``."""
    codes, levels = _codes(data[factors[0]])
    if len(factors) == 1:
        return codes, levels
    labels = levels.astype(str)
    for name in factors[1:]:
        c2, l2 = _codes(data[name])
        combined = codes * len(l2) + c2
        used, codes = np.unique(combined, return_inverse=True)
        labels = pd.Index([f"{labels[u // len(l2)]}:{l2.astype(str)[u % len(l2)]}" for u in used])
    return codes.astype(np.int64), labels


def _matrix(spec_or_formula, data: pd.DataFrame):
    if isinstance(spec_or_formula, str):
        return formulaic.model_matrix(spec_or_formula, data, na_action="ignore")
    return spec_or_formula.get_model_matrix(data, na_action="ignore")


def random_term(rt: RandomTerm, data: pd.DataFrame, spec=None) -> tuple[ReTerm, object]:
    """Build one random-effect term (its model columns and grouping codes)."""
    mm = _matrix(spec if spec is not None else rt.expr, data)
    if mm.shape[1] == 0:
        raise FormulaError(f"random term ({rt.expr} | {rt.group}) has no model columns")
    codes, levels = grouping_codes(data, rt.factors)
    term = ReTerm(
        group=rt.group,
        columns=tuple(r_name(c) for c in mm.columns),
        levels=levels,
        codes=codes,
        X=np.ascontiguousarray(mm.to_numpy(dtype=float)),
    )
    return term, mm.model_spec


def model_frame(formula: str, data: pd.DataFrame, missing: str = "drop") -> ModelFrame:
    """Parse ``formula`` and build the model's arrays from ``data``.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"y ~ x + (1 | a) + (1 + x | b)"``.
    data : pandas.DataFrame
        Never modified.
    missing : {"drop", "raise"}
        Rows with a missing value in a used column are dropped with a
        warning (lme4's ``na.omit``) or raise :class:`DataError`.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    parsed = parse_formula(formula)
    if not parsed.random:
        raise FormulaError(
            f"formula {formula!r} has no random-effects term such as (1 | group); "
            "for a model without random effects use ordinary least squares"
        )
    used = _variables(parsed)
    unknown = [c for c in used if c not in data.columns]
    if unknown:
        raise DataError(f"column {unknown[0]!r} used in the formula is not in the data", column=unknown[0])
    data = _complete_rows(data, used, missing)
    mm = formulaic.model_matrix(f"{parsed.response} ~ {parsed.fixed}", data, na_action="ignore")
    y = mm.lhs.to_numpy(dtype=float)
    if y.ndim != 1 and y.shape[1] != 1:
        raise DataError(f"the response {parsed.response!r} must be one numeric column", column=parsed.response)
    y = np.ascontiguousarray(y.ravel())
    X = np.ascontiguousarray(mm.rhs.to_numpy(dtype=float))
    built = [random_term(rt, data) for rt in parsed.random]
    order = sorted(range(len(built)), key=lambda k: -built[k][0].nlevels)
    return ModelFrame(
        formula=parsed,
        y=y,
        X=X,
        fe_names=[r_name(c) for c in mm.rhs.columns],
        terms=[built[k][0] for k in order],
        fixed_spec=mm.rhs.model_spec,
        term_specs=[(built[k][1], parsed.random[k]) for k in order],
        row_index=data.index,
    )
