"""The lme4-style model: formula → frame → crossproducts → backend → fit.

Each stage can be called on its own, as in lme4's modular interface:

>>> model = LinearMixedModel("y ~ x + (1 | g)", data)   # doctest: +SKIP
>>> model.objective(model.theta0)                       # deviance at θ   # doctest: +SKIP
>>> result = model.fit()                                # doctest: +SKIP
"""

from __future__ import annotations

import copy
import sys
import time
import warnings

import numpy as np
import pandas as pd

from .design import Layout
from .driver import Problem, optimize
from .errors import ConvergenceWarning, SingularFitWarning
from .frame import ModelFrame, model_frame
from .memory import memory_limit, without_hugepage_advice
from .results import LMMResults

# The solver's modules (scipy.sparse and scipy.linalg, 0.17 s) are imported by the first model, not by
# ``import sparselmm``: ``_solver()`` below.


def _solver():
    """(make_backend, crossproducts, lapack): what a model's set-up and fit need beyond the frame."""
    from . import lapack
    from .backends import make_backend
    from .crossprod import crossproducts

    return make_backend, crossproducts, lapack


class LinearMixedModel:
    """A linear mixed model given by an lme4 formula and a data frame.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"y ~ 1 + service + (1|s) + (1|d) + (1|dept)"``.
    data : pandas.DataFrame, file paths, list of DataFrames or dask.dataframe.DataFrame
        The data; never modified. Besides a DataFrame: a path, glob pattern or list of Parquet or
        CSV files, a list of DataFrames (or a function returning a new iterable of them), or a
        Dask DataFrame, read twice a piece at a time (``sparselmm.stream``): the same fit as the
        rows in one DataFrame, in the memory of one piece and the crossproducts.
    reml : bool
        Fit by REML (default, as lme4) or maximum likelihood.
    missing : {"drop", "raise"}
        What to do with rows that have missing values in a used column.
    backend : {"auto", "dense", "blocked", "sparse"}
        Solver: dense blocks per group when the terms are nested in one
        grouping factor; the first term eliminated in closed form and the
        rest dense ("blocked") when that rest is dense and moderate (crossed
        designs); one sparse CHOLMOD factor otherwise ("auto" chooses).
    max_memory : float, optional
        Bytes the solver's factor may take; by default the available memory.
        A larger model raises :class:`~sparselmm.errors.ModelSizeError` after
        the symbolic analysis, before any numeric work, with the estimated
        memory and time an iteration.
    verbose : bool
        Say on standard error, before the first factorization, which backend
        was chosen, the memory it will take and the time an iteration is
        estimated to take on this machine.
    weights : str or array-like, optional
        Prior weights (lme4's ``weights``): a column of the data, or one value per row; row i
        has residual variance σ²/wᵢ. Finite and positive. Data read in pieces: a column.
    offset : str or array-like, optional
        An offset (lme4's ``offset``), a column or one value per row, added to the formula's
        ``offset(...)`` terms: the model is y = offset + Xβ + Zb + ε.
    device : {"cpu", "cuda", "auto"}
        Where the blocked backend's dense block lives: "cuda" on the GPU (through CuPy, the
        ``[gpu]`` extra; :class:`~sparselmm.errors.DeviceError` without one), "auto" on the GPU
        when CuPy finds one and the block is dense and of order 4,000 or more. The crossproducts,
        the first term's levels and the optimizer stay on the CPU; ``max_memory`` then bounds
        the GPU's arrays.
    """

    def __init__(self, formula: str, data: pd.DataFrame, reml: bool = True, missing: str = "drop",
                 backend: str = "auto", max_memory: float | None = None, verbose: bool = False,
                 weights=None, offset=None, device: str = "cpu"):
        start = time.perf_counter()
        from .backends.gpu import resolve_device  # a bad device fails before any work

        resolve_device(device, backend)
        crossprod = None
        with _solver()[2].other_blas_single_threaded(), without_hugepage_advice():
            if isinstance(data, pd.DataFrame):
                frame = model_frame(formula, data, missing=missing, weights=weights, offset=offset)
            else:  # files, pieces or a Dask DataFrame: read twice, a piece at a time
                from .sources import open_source
                from .stream import stream_frame

                streamed = stream_frame(formula, lambda columns: open_source(data, columns), missing, verbose,
                                        weights, offset)
                frame, crossprod = streamed.frame, streamed.crossprod
        self._setup(formula, frame, reml, backend, None, max_memory, start, verbose, crossprod, device)
        # refits (likelihood-ratio tests, profiles of reduced models) and type 3 contrasts
        self.data = data if crossprod is None else None
        self.stream = None if crossprod is None else streamed  # the pieces, read again for fitted values
        self.options = {"missing": missing, "backend": backend, "max_memory": max_memory, "weights": weights,
                        "offset": offset, "device": device}

    @classmethod
    def from_frame(cls, frame: ModelFrame, reml: bool = True, backend: str = "auto",
                   group_codes: np.ndarray | None = None, formula: str = "",
                   max_memory: float | None = None) -> LinearMixedModel:
        """A model from arrays already built (used by the statsmodels-style front door).

        ``group_codes`` (group of each row) names the grouping for the dense
        backend when it is not one of the terms' factors.
        """
        model = cls.__new__(cls)
        model._setup(formula, frame, reml, backend, group_codes, max_memory, time.perf_counter())
        model.data = model.stream = None
        model.options = {"missing": "drop", "backend": backend, "max_memory": max_memory, "weights": None,
                         "offset": None, "device": "cpu"}
        return model

    def with_criterion(self, reml: bool) -> LinearMixedModel:
        """The same model fitted by the other criterion: frame and crossproducts shared (read only),
        a backend of its own (lme4's ``refitML`` without rebuilding Z'Z)."""
        other = copy.copy(self)
        other.reml = reml
        other.backend = _solver()[0](self.layout, self.crossprod, reml, self.backend.name, None,
                                     self.options["max_memory"], getattr(self.backend, "device", "cpu"))
        other.setup_seconds = 0.0
        return other

    def _setup(self, formula, frame, reml, backend, group_codes, max_memory, start, verbose=False, crossprod=None,
               device="cpu"):
        self.formula = formula
        self.reml = reml
        self.frame = frame
        self.layout = Layout(frame.terms)
        make_backend, crossproducts, lapack = _solver()
        with lapack.other_blas_single_threaded(), without_hugepage_advice():
            if crossprod is None:
                crossprod = crossproducts(self.layout, frame.X, frame.y_offset, weights=frame.weights)
            self.crossprod = crossprod
            self.backend = make_backend(self.layout, self.crossprod, reml, backend, group_codes, max_memory, device)
        self.setup_seconds = time.perf_counter() - start
        if verbose:
            from .cost import describe

            limit = getattr(self.backend, "memory_allowed", None) or memory_limit(max_memory)
            print(f"sparselmm: {self.backend.describe()}: {describe(self.backend.estimate(), limit)}",
                  file=sys.stderr, flush=True)

    @property
    def theta0(self) -> np.ndarray:
        """lme4's starting θ (each T_k = I)."""
        return self.layout.theta_start()

    @property
    def lower(self) -> np.ndarray:
        return self.layout.lower_bounds

    def problem(self) -> Problem:
        """θ → objective, gradient and EM update, for the driver."""
        return Problem(objective=self.objective, lower=self.lower, gradient=self.backend.gradient,
                       em_step=self.backend.em_step, hessian=self.backend.approximate_hessian,
                       canonical=self.layout.canonical)

    def objective(self, theta) -> float:
        """ML deviance (-2 log L) or REML criterion at θ (lme4's ``devfun``)."""
        return self.backend.objective(np.asarray(theta, dtype=float))

    def fit(self, method: str = "auto", theta0=None, maxiter: int = 2000, progress: bool | None = None) -> LMMResults:
        """Minimize the objective over θ and return the results.

        ``method="auto"``: one EM step, then Newton's method on the analytic
        gradient with the average-information Hessian, Powell if that fails
        (see :mod:`sparselmm.driver`);
        ``maxiter`` bounds each phase. A fit that does not converge warns
        (:class:`~sparselmm.errors.ConvergenceWarning`) and says so in
        ``converged`` and ``message``. ``progress``: a line per iteration on standard error
        (objective, gradient, time per iteration); None (default) for fits whose first evaluation
        takes over a second.
        """
        start = time.perf_counter()
        theta0 = self.theta0 if theta0 is None else np.asarray(theta0, dtype=float)
        with _solver()[2].fit_blas_threads(self.backend.blas_threads), without_hugepage_advice():
            opt = optimize(self.problem(), theta0, method=method, maxiter=maxiter, progress=progress)
        result = LMMResults(self, opt, fit_seconds=time.perf_counter() - start + self.setup_seconds)
        if not opt.converged:
            warnings.warn(f"the optimizer did not converge: {opt.message}", ConvergenceWarning, stacklevel=2)
        if result.singular:
            warnings.warn("boundary (singular) fit: see result.varcorr", SingularFitWarning, stacklevel=2)
        return result


def fit(formula: str, data: pd.DataFrame, reml: bool = True, method: str = "auto",
        missing: str = "drop", backend: str = "auto", max_memory: float | None = None,
        progress: bool | None = None, verbose: bool = False, weights=None, offset=None,
        device: str = "cpu") -> LMMResults:
    """Fit a linear mixed model given by an lme4 formula.

    Parameters
    ----------
    formula : str
        ``"y ~ x + (1 | a) + (1 + x | b)"``: fixed effects, then random terms
        ``(expr | group)``, ``(expr || group)`` (uncorrelated), ``(1 | a:b)``
        (interaction), ``(1 | a/b)`` (nested).
    data : pandas.DataFrame, file paths, list of DataFrames or dask.dataframe.DataFrame
        The data; never modified. Parquet or CSV files (a path, glob or list), a list of
        DataFrames (or a function returning a new iterable of them) and Dask DataFrames are read
        twice, a piece at a time (see :class:`LinearMixedModel`).
    reml : bool
        REML (default) or maximum likelihood.
    method : {"auto", "newton", "bfgs", "lbfgs", "powell", "nelder-mead"}
        Optimizer (see :meth:`LinearMixedModel.fit`).
    missing : {"drop", "raise"}
        Rows with missing values in used columns are dropped with a warning,
        or raise.
    backend : {"auto", "dense", "blocked", "sparse"}
        Solver (see :class:`LinearMixedModel`).
    max_memory : float, optional
        Bytes the factor may take (see :class:`LinearMixedModel`).
    progress : bool, optional
        A line per iteration on standard error; default: for fits whose first evaluation takes
        over a second (see :meth:`LinearMixedModel.fit`).
    verbose : bool
        The backend, its memory and the estimated time an iteration, before the first
        factorization (see :class:`LinearMixedModel`).
    weights : str or array-like, optional
        Prior weights, a column or one value per row (lme4's ``weights``: residual variance σ²/wᵢ).
    offset : str or array-like, optional
        An offset, a column or one value per row, added to the formula's ``offset(...)`` terms.
    device : {"cpu", "cuda", "auto"}
        Where the blocked backend's dense block lives (see :class:`LinearMixedModel`).

    Returns
    -------
    LMMResults
    """
    model = LinearMixedModel(formula, data, reml=reml, missing=missing, backend=backend, max_memory=max_memory,
                             verbose=verbose, weights=weights, offset=offset, device=device)
    return model.fit(method=method, progress=progress)
