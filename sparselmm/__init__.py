"""sparselmm: linear mixed models on sparse and dense solvers.

Two front doors: :func:`fit` takes an lme4 formula,
``sparselmm.fit("y ~ x + (1|a) + (1+x|b)", data)``; :class:`MixedLM` is
statsmodels' ``MixedLM`` (same arguments, names and results).

On import, unless already set, ``OMP_WAIT_POLICY`` defaults to ``PASSIVE``
(before Numba starts its OpenMP threads) and ``OPENBLAS_THREAD_TIMEOUT`` to
4 (before the system OpenBLAS is loaded): threads of a parallel kernel that
spin after it ends take the cores from the LAPACK call that follows, and
OpenBLAS's threads, which spin for 2²⁸ cycles by default, from the kernel
that follows (crossed 10⁶ rows: fit 2.7 s with Numba's spinning, 2.2 s
without; Schur passes 67–79 ms after OpenBLAS's calls, 51 ms with its
threads asleep).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from .errors import (  # noqa: E402
    ConvergenceWarning,
    DataError,
    DeviceError,
    FormulaError,
    MissingDataWarning,
    ModelSizeError,
    RankDeficiencyWarning,
    SingularFitWarning,
)
from .model import LinearMixedModel, fit  # noqa: E402
from .results import LMMResults  # noqa: E402

def anova(*results, names=None, refit: bool = True):
    """Likelihood-ratio tests of nested fits (lme4's ``anova(m0, m1, ...)``): see
    :func:`sparselmm.inference.lrt.anova`."""
    from .inference.lrt import anova as _anova

    return _anova(*results, names=names, refit=refit)


#: The statsmodels door, imported on first use (it imports statsmodels).
_MIXEDLM = ("MixedLM", "MixedLMParams", "MixedLMResults")


def __getattr__(name):
    if name in _MIXEDLM:
        from . import mixedlm

        return getattr(mixedlm, name)
    raise AttributeError(f"module 'sparselmm' has no attribute {name!r}")

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DeviceError",
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
    "anova",
    "fit",
]
__version__ = "0.1.0"
