"""statsmodels' ``MixedLM`` API on sparselmm's backends: change one import."""

from .model import MixedLM, VCSpec
from .params import MixedLMParams
from .results import MixedLMResults

__all__ = ["MixedLM", "MixedLMParams", "MixedLMResults", "VCSpec"]
