"""Typed exceptions and warnings of sparselmm.

Every error carries the facts a user needs to fix the call: the column,
term, level or size that is wrong, in its message and as attributes.
"""

from __future__ import annotations


class SparseLMMError(Exception):
    """Base class of every error raised by sparselmm."""


class FormulaError(SparseLMMError, ValueError):
    """The model formula cannot be parsed or uses unsupported syntax."""


class DataError(SparseLMMError, ValueError):
    """The data cannot be used with the formula (a column, level or value).

    Parameters
    ----------
    message : str
        What is wrong, naming the column or term.
    column : str, optional
        The column (or grouping factor, or fixed-effect column) concerned,
        when there is one.
    level : object, optional
        The level of a grouping factor concerned, when there is one.
    """

    def __init__(self, message: str, column: str | None = None, level=None):
        super().__init__(message)
        self.column = column
        self.level = level


class ModelSizeError(SparseLMMError, MemoryError):
    """The model's factor would not fit in the memory allowed."""

    def __init__(self, message: str, nbytes: int):
        super().__init__(message)
        self.nbytes = nbytes


class DeviceError(SparseLMMError, RuntimeError):
    """``device="cuda"`` where no GPU can be used: no CuPy, no CUDA driver or no device."""


class ConvergenceWarning(UserWarning):
    """The optimizer stopped without meeting its convergence criterion."""


class SingularFitWarning(UserWarning):
    """A variance component or correlation is on the boundary."""


class MissingDataWarning(UserWarning):
    """Rows with missing values in a used column were dropped."""


class RankDeficiencyWarning(UserWarning):
    """Aliased fixed-effect columns were dropped (lme4's rank-deficiency message)."""
