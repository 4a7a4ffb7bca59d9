"""sparselmm: linear mixed models on sparse and dense solvers.

Two front doors: :func:`fit` takes an lme4 formula,
``sparselmm.fit("y ~ x + (1|a) + (1+x|b)", data)``; :class:`MixedLM` is
statsmodels' ``MixedLM`` (same arguments, names and results).
"""

from .errors import (
    ConvergenceWarning,
    DataError,
    FormulaError,
    MissingDataWarning,
    ModelSizeError,
    RankDeficiencyWarning,
    SingularFitWarning,
)
from .mixedlm import MixedLM, MixedLMParams, MixedLMResults
from .model import LinearMixedModel, fit
from .results import LMMResults

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "FormulaError",
    "LMMResults",
    "MissingDataWarning",
    "RankDeficiencyWarning",
    "LinearMixedModel",
    "MixedLM",
    "MixedLMParams",
    "MixedLMResults",
    "ModelSizeError",
    "SingularFitWarning",
    "fit",
]
__version__ = "0.1.0"
