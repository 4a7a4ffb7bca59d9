"""sparselmm: linear mixed models on sparse and dense solvers.

Two front doors: :func:`fit` takes an lme4 formula,
``sparselmm.fit("y ~ x + (1|a) + (1+x|b)", data)``.
"""

from .errors import ConvergenceWarning, DataError, FormulaError, ModelSizeError, SingularFitWarning
from .model import LinearMixedModel, fit
from .results import LMMResults

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "FormulaError",
    "LMMResults",
    "LinearMixedModel",
    "ModelSizeError",
    "SingularFitWarning",
    "fit",
]
__version__ = "0.1.0"
