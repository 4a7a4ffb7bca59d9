"""statsmodels' ``MixedLM`` API on sparselmm's backends: change one import.

This door builds on statsmodels' base classes: importing it imports
statsmodels (``import sparselmm`` alone does not).
"""

from .model import MixedLM
from .params import MixedLMParams
from .results import MixedLMResults, MixedLMResultsWrapper

__all__ = ["MixedLM", "MixedLMParams", "MixedLMResults", "MixedLMResultsWrapper"]
