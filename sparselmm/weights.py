"""Prior weights and offsets: the per-row inputs beside the formula's design (lme4's ``weights``
and ``offset``).

With prior weights wᵢ the residual variance of row i is σ²/wᵢ. Scaling row i of [Z X y] by √wᵢ
makes the residuals homoscedastic again, so the weights enter only the crossproducts
(Z'WZ, Z'WX, Z'Wy, X'WX, X'Wy, y'Wy) and the log-likelihood's constant: lme4's criterion
subtracts Σ log wᵢ (``lmerResp``'s ``ldW``). The offset is subtracted from the response before
the crossproducts and added back to every fitted value and prediction.

Weights must be finite and positive: lme4 refuses negative weights, and a zero weight makes its
criterion infinite (log 0) at every θ, so that its optimizer returns its starting values as a fit;
here both are errors that name the column, raised before any work, as are missing and infinite
weights (a row without information is one to drop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import DataError


@dataclass(frozen=True)
class RowInput:
    """A weights or offset argument: a column of the data (``column``) or values given with the
    data (``values``, one per row of the data given)."""

    what: str  # "weights" or "offset"
    column: str | None = None
    values: np.ndarray | None = None

    @property
    def label(self) -> str:
        """The column's name, or the argument's (for messages)."""
        return self.column if self.column is not None else self.what

    def read(self, data: pd.DataFrame) -> np.ndarray:
        """The values for every row of ``data``, as floats."""
        if self.column is None:
            if len(self.values) != len(data):
                raise DataError(f"{self.what} has {len(self.values)} values for {len(data)} rows of data",
                                column=self.what)
            return self.values
        column = data[self.column]
        if not pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype) or \
                isinstance(column.dtype, pd.CategoricalDtype):
            raise DataError(f"the {self.what} column {self.column!r} is not numeric (dtype {column.dtype})",
                            column=self.column)
        return column.to_numpy(dtype=float, na_value=np.nan)


def row_input(value, what: str) -> RowInput | None:
    """``weights=`` or ``offset=`` as given: None, a column name, or array-like values."""
    if value is None:
        return None
    if isinstance(value, str):
        return RowInput(what, column=value)
    values = np.asarray(value, dtype=float) if not isinstance(value, pd.Series) else value.to_numpy(dtype=float)
    if values.ndim != 1:
        raise DataError(f"{what} must be a column name or one value per row, not an array of shape {values.shape}",
                        column=what)
    return RowInput(what, values=values)


def columns(*inputs: RowInput | None) -> list[str]:
    """The data columns the inputs read."""
    return [i.column for i in inputs if i is not None and i.column is not None]


def check_weights(w: np.ndarray, label: str, index: pd.Index, where: str = "") -> None:
    """Weights are finite and positive; else a DataError naming the column and rows."""
    from .frame import _rows_named

    bad = ~(np.isfinite(w) & (w > 0))
    if not bad.any():
        return
    j = np.flatnonzero(bad)
    v = w[j[0]]
    kind = ("missing" if np.isnan(v) else "infinite" if np.isinf(v) else "negative" if v < 0 else "zero")
    why = {"negative": "prior weights must be positive (lme4 refuses negative weights)",
           "zero": "a zero weight makes lme4's criterion infinite (log 0) at every θ and its fit meaningless: "
                   "drop those rows, which carry no information",
           "missing": "drop those rows, or give them a weight",
           "infinite": "a weight must be finite (a residual variance σ²/w of zero)"}[kind]
    raise DataError(f"the weights {label!r}{where} have {int(bad.sum())} value(s) that are not finite and positive "
                    f"({kind} at {_rows_named(index, bad)}): {why}", column=label)


def offset_values(exprs: tuple[str, ...], data: pd.DataFrame, index: pd.Index) -> np.ndarray | None:
    """Σ of the formula's ``offset(expr)`` terms on ``data`` (None without them)."""
    from .errors import FormulaError
    from .frame import _check_finite, _matrix

    if not exprs:
        return None
    total = np.zeros(len(data))
    for expr in exprs:
        try:
            mm = _matrix(f"0 + I({expr})", data)
        except Exception as exc:  # formulaic's own errors
            raise FormulaError(f"cannot evaluate offset({expr}): {exc}") from None
        state = getattr(mm.model_spec, "encoder_state", {}) or {}
        if mm.shape[1] != 1 or any(getattr(kind, "value", kind) == "categorical" for kind, _ in state.values()):
            raise DataError(f"offset({expr}) is not one numeric value per row", column=expr)
        values = np.asarray(mm, dtype=float).ravel()
        _check_finite(values[:, None], [f"offset({expr})"], index, "offset")
        total += values
    return total


def add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """Sum of two optional per-row arrays."""
    if a is None:
        return b
    return a if b is None else a + b


def whiten(sqrtw: np.ndarray | None, *arrays: np.ndarray):
    """Each array's rows scaled by √w (unchanged without weights): the model of unit residual variance."""
    if sqrtw is None:
        return arrays
    return tuple(a * (sqrtw[:, None] if a.ndim == 2 else sqrtw) for a in arrays)
