"""From a formula and a data frame to the model's arrays (lme4 conventions).

Fixed effects go through formulaic with treatment contrasts (first level in
sorted order is the reference) and are renamed as R names them
(``(Intercept)``, ``service1``, ``age:SexMale``). Each random term's model
columns also go through formulaic; its grouping factor becomes integer codes
over the levels that occur, sorted (categorical columns keep their category
order), interactions ``a:b`` ordered a-major as R's ``a:b`` does. Terms are
sorted by decreasing number of levels, as lme4 sorts them.

Bad input is refused here, before any crossproduct, by checks that cost at
most O(n p²): the response must be numeric (not text, categories or
booleans), finite and not fitted exactly by the fixed effects; every grouping
factor needs more than one level and fewer levels than rows, and no term more
random effects than rows (lme4's ``checkNlevels`` and ``check.nobs.vs.nRE``);
aliased fixed-effect columns are dropped with a warning (lme4's
``rankX.chk = "message+drop.cols"``, same rule: a column is dropped when its
part orthogonal to the columns before it is below ``RANK_TOL`` of its norm).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from ._lazy import lazy_module
from .design import ReTerm
from .errors import DataError, FormulaError, MissingDataWarning, RankDeficiencyWarning
from .formula import ParsedFormula, RandomTerm, parse_formula, term_labels
from .weights import RowInput, add, check_weights, offset_values, row_input

formulaic = lazy_module("formulaic")  # imported by the first formula: 70 ms

_MISSING = ("drop", "raise")
RANK_TOL = 1e-7
#: Columns whose scaled Cholesky diagonal (the part orthogonal to the columns
#: before, per unit norm) all exceed this are kept without a QR: X'X's
#: rounding cannot move a part that large below RANK_TOL.
CLEARLY_INDEPENDENT = 1e-3
"""Relative tolerance of the fixed-effects rank check (lme4's ``rankX.chk`` default)."""


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
    weights : ndarray, shape (n,), optional
        Prior weights: row i has residual variance σ²/wᵢ.
    offset : ndarray, shape (n,), optional
        The offset (the formula's ``offset()`` terms and the ``offset`` argument, summed).
    weights_input, offset_input : RowInput, optional
        The ``weights`` and ``offset`` arguments as given (a column, or values).
    """

    formula: ParsedFormula
    y: np.ndarray
    X: np.ndarray
    fe_names: list[str]
    terms: list[ReTerm]
    fixed_spec: object
    term_specs: list
    row_index: pd.Index
    nrows: int | None = None  # rows of a model read in pieces (``stream``), whose y and X are not kept
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None
    weights_input: RowInput | None = None
    offset_input: RowInput | None = None

    @property
    def n(self) -> int:
        return len(self.y) if self.nrows is None else self.nrows

    @cached_property
    def sqrtw(self) -> np.ndarray | None:
        """√w of the prior weights (None without weights)."""
        return None if self.weights is None else np.sqrt(self.weights)

    @property
    def y_offset(self) -> np.ndarray:
        """The response less the offset: what Xβ + Zb models."""
        return self.y if self.offset is None else self.y - self.offset

    def new_offset(self, data: pd.DataFrame, offset=None) -> np.ndarray | None:
        """The offset of new rows: the formula's ``offset()`` terms evaluated on ``data``, plus
        ``offset`` (a column name or values) or, without it, the fit's ``offset`` column (lme4's
        ``predict``); an offset given to the fit as values must be given anew."""
        extra = row_input(offset, "offset") if offset is not None else self.offset_input
        if extra is not None and extra.column is None and offset is None:
            raise DataError("the model's offset was given as values, not a column: give the offset of the new rows "
                            "as predict(newdata, offset=...)", column="offset")
        if extra is not None and extra.column is not None and extra.column not in data.columns:
            raise DataError(f"the offset column {extra.column!r} is not in the new data", column=extra.column)
        return add(offset_values(self.formula.offsets, data, data.index),
                   None if extra is None else extra.read(data))


def _variables(parsed: ParsedFormula) -> list[str]:
    names: list[str] = []
    offsets = (f"0 + I({o})" for o in parsed.offsets)
    for text in (parsed.response, parsed.fixed, *(t.expr for t in parsed.random), *offsets):
        try:
            names += sorted(formulaic.Formula(text).required_variables)
        except Exception as exc:  # formulaic's own parse errors
            raise FormulaError(f"cannot parse {text!r}: {exc}") from exc
    for t in parsed.random:
        names += list(t.factors)
    return list(dict.fromkeys(names))


def _check_columns(formula: str, used: list[str], data: pd.DataFrame) -> None:
    """Every name the formula uses is a column (or a known function)."""
    for name in used:
        if name in data.columns:
            continue
        if re.search(rf"(?<![\w.]){re.escape(name)}\s*\(", formula):
            raise FormulaError(f"unsupported function {name}() in formula {formula!r}: it is neither a "
                               "column of the data nor a known transform (offsets, smooths and other "
                               "special terms are not supported)")
        raise DataError(f"column {name!r} used in the formula is not in the data", column=name)


def _check_input_columns(data: pd.DataFrame, *inputs: RowInput | None) -> None:
    """The weights and offset columns named are in the data."""
    for i in inputs:
        if i is not None and i.column is not None and i.column not in data.columns:
            raise DataError(f"the {i.what} column {i.column!r} is not in the data", column=i.column)


def _complete_rows(data: pd.DataFrame, columns: list[str], missing: str,
                   extra: dict | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Rows without missing values in ``columns`` or in the ``extra`` arrays (name → values per
    row), and the mask of those rows (None: all); never modifies ``data``."""
    if missing not in _MISSING:
        raise ValueError(f"missing must be one of {_MISSING}, not {missing!r}")
    na = {c: data[c].isna().to_numpy() for c in columns}  # column by column: data[columns] would copy them
    na.update({name: np.isnan(v) for name, v in (extra or {}).items()})
    bad = np.logical_or.reduce(list(na.values()))
    if not bad.any():
        return data, None
    counts = pd.Series({c: int(m.sum()) for c, m in na.items()})
    detail = ", ".join(f"{c!r} ({k})" for c, k in counts[counts > 0].items())
    if missing == "raise":
        raise DataError(f"missing values in column(s) {detail}; use missing='drop' to drop those rows",
                        column=str(counts[counts > 0].index[0]))
    warnings.warn(f"dropped {int(bad.sum())} of {len(data)} rows with missing values in {detail}",
                  MissingDataWarning, stacklevel=3)
    return data.loc[~bad], ~bad


def _codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes over the levels that occur, in sorted (or category) order."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy().astype(np.int64)  # no missing values here: -1 never occurs
        used = np.bincount(codes, minlength=len(column.cat.categories)) > 0
        if used.all():
            return codes, pd.Index(column.cat.categories)
        new = np.cumsum(used) - 1  # the occurring categories renumbered in order (O(n), no sort)
        return new[codes], pd.Index(column.cat.categories[used])
    codes, levels = pd.factorize(column, sort=True)
    return codes.astype(np.int64), pd.Index(levels)


def grouping_codes(data: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Codes and level labels of the interaction of ``factors``."""
    codes, labels, _ = interaction([_codes(data[name]) for name in factors])
    return codes, labels


def interaction(factors: list[tuple[np.ndarray, pd.Index]]) -> tuple[np.ndarray, pd.Index, list[np.ndarray]]:
    """Codes and labels (``"a:b"``) of the interaction of factors given by their codes and levels,
    over the combinations that occur, ordered first-factor-major as R's ``a:b``; and, for each
    factor after the first, the combined codes met at that step (sorted: ``stream`` maps other
    rows through them)."""
    codes, labels = factors[0]
    steps = []
    for c2, l2 in factors[1:]:
        used, codes = np.unique(codes * len(l2) + c2, return_inverse=True)
        steps.append(used)
        names, first = l2.astype(str), labels.astype(str)
        labels = pd.Index([f"{first[u // len(l2)]}:{names[u % len(l2)]}" for u in used])
    return codes.astype(np.int64), labels, steps


def _matrix(spec_or_formula, data: pd.DataFrame):
    """formulaic's model matrix as a C-ordered numpy array (its column names in ``model_spec``)."""
    if isinstance(spec_or_formula, str):
        return formulaic.model_matrix(spec_or_formula, data, na_action="ignore", output="numpy")
    return spec_or_formula.get_model_matrix(data, na_action="ignore")


def random_term(rt: RandomTerm, data: pd.DataFrame, spec=None, fixed=None) -> tuple[ReTerm, object]:
    """Build one random-effect term (its model columns and grouping codes).

    ``fixed`` (formulaic's fixed-effects model matrix on the same rows) is
    used instead of a new model matrix when the term's columns are among its
    (:func:`_among_fixed`); the term's spec is then None (its expression is
    rebuilt as it stands on new data).
    """
    cols = _among_fixed(rt, data, fixed) if fixed is not None and spec is None else None
    if cols is not None:
        names = [fixed.model_spec.column_names[j] for j in cols]
        X = fixed if cols == list(range(fixed.shape[1])) else fixed[:, cols]
        spec = None
    else:
        mm = _matrix(spec if spec is not None else rt.expr, data)
        names, X, spec = mm.model_spec.column_names, mm, mm.model_spec
    if X.shape[1] == 0:
        raise FormulaError(f"random term ({rt.expr} | {rt.group}) has no model columns")
    codes, levels = grouping_codes(data, rt.factors)
    term = ReTerm(
        group=rt.group,
        columns=tuple(r_name(c) for c in names),
        levels=levels,
        codes=codes,
        X=np.ascontiguousarray(X, dtype=float),
    )
    return term, spec


def _among_fixed(rt: RandomTerm, data: pd.DataFrame, fixed) -> list[int] | None:
    """Where the random term's model columns are among the fixed effects' (formulaic's matrix
    ``fixed``), when its expression is the intercept and numeric columns as they stand: its model
    matrix is then those columns, whatever the data (no transform, no coding); else None.

    Columns are found by formulaic's terms (the intercept is the term ``1``, a column of the data
    the term of its name), in the order of the term's own: intercept first, as formulaic orders them.
    """
    slices = {str(term): s for term, s in fixed.model_spec.term_slices.items()}
    cols = []
    for label in term_labels(rt.expr):
        if label != "1":
            column = data[label] if label in data.columns else None
            if column is None or not pd.api.types.is_numeric_dtype(column.dtype) or \
                    pd.api.types.is_bool_dtype(column.dtype):
                return None
        s = slices.get(label)
        if s is None or s.stop - s.start != 1:
            return None
        cols.append(s.start)
    return cols


def _rows_named(index: pd.Index, mask: np.ndarray, limit: int = 5) -> str:
    """``"row 3"`` / ``"rows 3, 8, 11 and 2 more"`` (index labels) for error messages."""
    labels = list(index[np.flatnonzero(mask)[:limit]])
    more = int(mask.sum()) - len(labels)
    text = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in labels)
    return ("row " if len(labels) == 1 and not more else "rows ") + text + (f" and {more} more" if more else "")


def _check_response_column(name: str, data: pd.DataFrame) -> pd.DataFrame:
    """The response, when it is a column of the data, is numeric and not boolean.

    Numbers stored in an object column are converted (in a shallow copy of
    ``data``), since formulaic would take them as categories.
    """
    if name not in data.columns:
        return data  # an expression such as log(y): checked after encoding
    col = data[name]
    kind = pd.api.types.infer_dtype(col, skipna=True) if col.dtype == object else None
    if pd.api.types.is_bool_dtype(col.dtype) or kind == "boolean":
        raise DataError(f"the response {name!r} is boolean (True/False): a linear mixed model needs a numeric "
                        "response; convert it with .astype(float) if that is what is meant (a binary "
                        "response usually calls for a logistic mixed model)", column=name)
    numeric = kind in ("floating", "integer", "mixed-integer-float", "decimal", "empty") if kind else (
        pd.api.types.is_numeric_dtype(col.dtype) and not isinstance(col.dtype, pd.CategoricalDtype))
    if not numeric:
        raise DataError(f"the response {name!r} is not numeric (dtype {col.dtype}): a linear mixed model "
                        "needs a numeric response", column=name)
    if kind:
        data = data.assign(**{name: pd.to_numeric(col)})
    return data


def _response(mm, name: str, index: pd.Index) -> np.ndarray:
    """The response vector from formulaic's left-hand side, checked."""
    lhs = mm.lhs
    state = getattr(lhs.model_spec, "encoder_state", {}) or {}
    categorical = [v for v, (kind, _) in state.items() if getattr(kind, "value", kind) == "categorical"]
    if categorical or lhs.shape[1] != 1:
        raise DataError(f"the response {name!r} must be one numeric column"
                        + (f"; {categorical[0]!r} is categorical" if categorical else ""), column=name)
    y = np.ascontiguousarray(lhs, dtype=float).ravel()
    bad = ~np.isfinite(y)
    if bad.any():
        raise DataError(f"the response {name!r} has {int(bad.sum())} {_nonfinite(y[bad])}, at "
                        f"{_rows_named(index, bad)}", column=name)
    return y


def _nonfinite(values: np.ndarray) -> str:
    return "infinite value(s)" if not np.isnan(values).any() else "non-finite value(s) (inf or NaN)"


def _check_finite(M: np.ndarray, names, index: pd.Index, what: str) -> None:
    """Model columns computed from complete rows are finite (log(0) is not)."""
    bad = ~np.isfinite(M)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        raise DataError(f"{what} column {names[j]!r} has {int(bad[:, j].sum())} {_nonfinite(M[bad[:, j], j])}, "
                        f"at {_rows_named(index, bad[:, j])}", column=names[j])


def _check_levels(terms: list[ReTerm], n: int) -> None:
    """lme4's checkNlevels and check.nobs.vs.nRE, naming the factor or term."""
    for t in terms:
        if t.nlevels < 2:
            level = t.levels[0] if t.nlevels else None
            raise DataError(f"grouping factor {t.group!r} has a single level ({level!r}) in the {n} rows "
                            "used: grouping factors must have > 1 sampled level", column=t.group, level=level)
        if t.nlevels >= n:
            raise DataError(f"grouping factor {t.group!r} has {t.nlevels} levels for {n} observations: the "
                            "number of levels of each grouping factor must be < number of observations "
                            "(one row per level cannot separate the random effect from the residual)",
                            column=t.group)
    for t in terms:
        if t.size >= n:
            cols = " + ".join(t.columns)
            raise DataError(f"number of observations (={n}) <= number of random effects (={t.size}) for term "
                            f"({cols} | {t.group}): the random-effects parameters and the residual variance "
                            "are probably unidentifiable", column=t.group)


def independent_columns(X: np.ndarray, tol: float = RANK_TOL) -> tuple[np.ndarray, np.ndarray | None]:
    """Columns of ``X`` kept by R's limited-pivoting QR, and an orthonormal basis of their span.

    Left to right, a column is dropped when its part orthogonal to the columns
    kept before it is at most ``tol`` times its norm (all-zero columns are
    dropped), as R's ``qr(X, tol)`` (LINPACK dqrdc2) that lme4 uses: of two
    aliased columns the later one goes. Those parts are the diagonal of the
    Cholesky factor of the scaled X'X: when none is below CLEARLY_INDEPENDENT
    every column is kept, without a QR of the n rows, and the basis is None
    (see :func:`residual`); otherwise the columns are orthogonalized one by
    one.
    """
    n, p = X.shape
    G = X.T @ X
    norms = np.sqrt(np.diag(G))
    if p and np.all(norms > 0) and p <= n:
        G = G / np.outer(norms, norms)
        try:
            if np.all(np.diag(np.linalg.cholesky(G)) > CLEARLY_INDEPENDENT):
                return np.arange(p), None
        except np.linalg.LinAlgError:
            pass
    keep: list[int] = []
    basis = np.empty((n, min(n, p)))
    for j in np.flatnonzero(norms > 0):
        if len(keep) == n:
            break
        v = X[:, j] / norms[j]
        B = basis[:, :len(keep)]
        for _ in range(2):  # twice is enough (Kahan-Parlett)
            v = v - B @ (B.T @ v)
        nv = np.linalg.norm(v)
        if nv > tol:
            basis[:, len(keep)] = v / nv
            keep.append(int(j))
    return np.array(keep, dtype=np.int64), basis[:, :len(keep)]


def residual(y: np.ndarray, X: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """y minus its least-squares fit on X: through the basis, or (basis None: X well conditioned) by the
    normal equations with one step of iterative refinement."""
    if basis is not None:
        r = y - basis @ (basis.T @ y) if basis.shape[1] else y
        return r - basis @ (basis.T @ r) if basis.shape[1] else r
    G = X.T @ X
    r = y - X @ np.linalg.solve(G, X.T @ y)
    return r - X @ np.linalg.solve(G, X.T @ r)


def fitted_exactly(y: np.ndarray, X: np.ndarray, basis: np.ndarray | None) -> bool:
    """Whether X fits y exactly: its least-squares residual is at most 1e-12 ‖y‖.

    With X well conditioned (``basis`` None) the residual's share of y'y from
    the normal equations, (y'y − y'X(X'X)⁻¹X'y) / y'y, is good to ~1e-12;
    above 1e-8 the fit is clearly not exact and no n-vector is formed.
    """
    yy = float(y @ y)
    if basis is None and X.shape[1] and yy > 0:
        b = X.T @ y
        if (yy - b @ np.linalg.solve(X.T @ X, b)) / yy > 1e-8:
            return False
    return bool(np.linalg.norm(residual(y, X, basis)) <= 1e-12 * np.sqrt(yy))


class _ColumnSubset:
    """A formulaic ModelSpec whose model matrix keeps only some columns (aliased ones dropped)."""

    def __init__(self, spec, keep: np.ndarray):
        self.model_spec = spec
        self.keep = keep

    def get_model_matrix(self, data, **kwargs):
        return self.model_spec.get_model_matrix(data, **kwargs)[:, self.keep]

    def __getattr__(self, name):
        return getattr(self.model_spec, name)


def model_frame(formula: str, data: pd.DataFrame, missing: str = "drop", weights=None, offset=None) -> ModelFrame:
    """Parse ``formula`` and build the model's arrays from ``data``.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"y ~ x + (1 | a) + (1 + x | b)"``.
    data : pandas.DataFrame
        Never modified.
    missing : {"drop", "raise"}
        Rows with a missing value in a used column (NaN, None, NA, also as a
        grouping level) are dropped with a warning (lme4's ``na.omit``) or
        raise :class:`DataError`.
    weights : str or array-like, optional
        Prior weights, a column or one value per row: row i has residual
        variance σ²/wᵢ (lme4's ``weights``). Finite and positive.
    offset : str or array-like, optional
        An offset, a column or one value per row, added to the formula's
        ``offset()`` terms (lme4's ``offset``).

    Raises
    ------
    FormulaError
        Malformed formula, unsupported syntax or function, no random term.
    DataError
        Unknown column; non-numeric, boolean, infinite or exactly fitted
        response; too few rows; more fixed-effect columns than rows; a
        grouping factor with one level or as many levels as rows; weights
        that are missing, not finite or not positive; an infinite offset.

    Warns
    -----
    MissingDataWarning
        Rows dropped for missing values (how many, which columns).
    RankDeficiencyWarning
        Aliased fixed-effect columns dropped (named); they are not in ``fe_names``.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if missing not in _MISSING:
        raise ValueError(f"missing must be one of {_MISSING}, not {missing!r}")
    parsed = parse_formula(formula)
    if not parsed.random:
        raise FormulaError(
            f"formula {formula!r} has no random-effects term such as (1 | group); "
            "for a model without random effects use ordinary least squares"
        )
    used = _variables(parsed)
    _check_columns(formula, used, data)
    w_in, o_in = row_input(weights, "weights"), row_input(offset, "offset")
    _check_input_columns(data, w_in, o_in)
    data = _check_response_column(parsed.response, data)
    if len(data) == 0:
        raise DataError("the data frame has no rows")
    nrows = len(data)
    w = None if w_in is None else w_in.read(data)
    o = None if o_in is None else o_in.read(data)
    data, keep = _complete_rows(data, used, missing, {} if o is None else {o_in.label: o})
    if keep is not None:
        w, o = (None if v is None else v[keep] for v in (w, o))
    if w is not None:
        check_weights(w, w_in.label, data.index)
    if len(data) < 2:
        raise DataError(f"{len(data)} row(s) left of {nrows} after dropping rows with missing values: a "
                        "mixed model needs more than one observation" if len(data) < nrows else
                        f"the data has {nrows} row: a mixed model needs more than one observation")
    n = len(data)
    mm = _matrix(f"{parsed.response} ~ {parsed.fixed}", data)
    y = _response(mm, parsed.response, data.index)
    X = np.ascontiguousarray(mm.rhs, dtype=float)
    fe_names = [r_name(c) for c in mm.rhs.model_spec.column_names]
    _check_finite(X, fe_names, data.index, "fixed-effect")
    if o is not None:
        _check_finite(o[:, None], [o_in.label], data.index, "offset")
    o = add(offset_values(parsed.offsets, data, data.index), o)
    if X.shape[1] > n:
        raise DataError(f"the fixed-effects model matrix has {X.shape[1]} columns but there are only {n} "
                        "observations: simplify the fixed part")
    built = [random_term(rt, data, fixed=mm.rhs) for rt in parsed.random]
    for term, _ in built:
        _check_finite(term.X, term.columns, data.index, f"random term ({term.group}):")
    order = sorted(range(len(built)), key=lambda k: -built[k][0].nlevels)
    terms = [built[k][0] for k in order]
    _check_levels(terms, n)
    fixed_spec = mm.rhs.model_spec
    keep, Q = independent_columns(X)
    if len(keep) < X.shape[1]:
        kept = set(keep.tolist())
        dropped = [name for j, name in enumerate(fe_names) if j not in kept]
        k = len(dropped)
        warnings.warn(f"fixed-effect model matrix is rank deficient so dropping {k} "
                      f"{'column / coefficient' if k == 1 else 'columns / coefficients'}: "
                      + ", ".join(map(repr, dropped)), RankDeficiencyWarning, stacklevel=3)
        X = np.ascontiguousarray(X[:, keep])
        fe_names = [fe_names[j] for j in keep]
        fixed_spec = _ColumnSubset(fixed_spec, keep)
    if X.shape[1] >= n:
        raise DataError(f"the fixed effects have {X.shape[1]} linearly independent columns for {n} "
                        "observations: no residual degrees of freedom are left")
    if fitted_exactly(y if o is None else y - o, X, Q):
        what = (f"is constant (every value is {y[0]:g})" if np.ptp(y) == 0 else
                "is fitted exactly by the fixed effects (zero residuals)")
        raise DataError(f"the response {parsed.response!r} {what}: its variance cannot be estimated",
                        column=parsed.response)
    return ModelFrame(
        formula=parsed,
        y=y,
        X=X,
        fe_names=fe_names,
        terms=terms,
        fixed_spec=fixed_spec,
        term_specs=[(built[k][1], parsed.random[k]) for k in order],
        row_index=data.index,
        weights=w,
        offset=o,
        weights_input=w_in,
        offset_input=o_in,
    )
