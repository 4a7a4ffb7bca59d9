"""Parametric bootstrap (lme4's ``simulate`` and ``bootMer``).

A replicate is y* = Xβ̂ + ZΛ̂u* + ε, u* ~ N(0, σ̂²I_q), ε ~ N(0, σ̂²I_n). The
refit needs only Z'y*, X'y*, y*'y*; with b* = Λ̂u* and the response stored
shifted by Xβ̂ (y* − Xβ̂ = Zb* + ε, as the crossproducts store it):

    Z'(Zb* + ε) = Z'Z b* + Z'ε,   X'(Zb* + ε) = X'Z b* + X'ε,
    ‖Zb* + ε‖² = b*'Z'Z b* + 2 b*'Z'ε + ε'ε,

from the stored crossproducts and one pass over ε (Z'ε by the terms' level
codes: a scatter-add). Z, Z'Z and the symbolic analysis are reused: each
worker builds one backend and swaps the response in
(:meth:`ProfiledBackend.set_response`); each refit is Newton's method
warm-started from the estimate.

Replicate i draws from ``SeedSequence(seed).spawn(n)[i]``: the same seed gives
the same replicates for any number of workers. Workers are processes (spawned,
one BLAS and one Numba thread each).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import multiprocessing as mp
import numpy as np
import pandas as pd

from ..weights import whiten
from . import interval_columns


@dataclass
class _Job:
    """What a worker needs: the design and the estimate (no data frame, no backend)."""

    layout: object
    cp: object
    codes: list
    Xterms: list
    X: np.ndarray
    reml: bool
    backend: str
    theta: np.ndarray
    beta: np.ndarray
    sigma: float
    names: list
    statistic: object = None
    threads: int | None = None


def _zt(job: _Job, v: np.ndarray) -> np.ndarray:
    """Z'v by the level codes."""
    out = np.empty(job.layout.q)
    for k, (codes, Xk) in enumerate(zip(job.codes, job.Xterms)):
        p, nl, off = job.layout.p[k], job.layout.nlevels[k], job.layout.col_offset[k]
        for a in range(p):
            out[off + a:off + p * nl:p] = np.bincount(codes, weights=Xk[:, a] * v, minlength=nl)
    return out


def draw(job: _Job, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One replicate's (b*, ε)."""
    u = rng.standard_normal(job.layout.q) * job.sigma
    eps = rng.standard_normal(job.X.shape[0]) * job.sigma
    return job.layout.lambda_times(job.theta, u), eps


class _Worker:
    """A backend of its own, refitted replicate by replicate."""

    def __init__(self, job: _Job):
        from ..backends import make_backend  # noqa: PLC0415
        from ..driver import Problem  # noqa: PLC0415

        self.job = job
        cp = job.cp
        cp = replace(cp, ZtXy=cp.ZtXy.copy(), Xty=cp.Xty.copy())
        self.ZtZ, self.ZtX = cp.ZtZ, cp.ZtX.copy()
        self.backend = make_backend(job.layout, cp, job.reml, job.backend)
        b = self.backend
        self.problem = Problem(objective=b.objective, lower=job.layout.lower_bounds, gradient=b.gradient,
                               em_step=b.em_step, hessian=b.approximate_hessian, canonical=job.layout.canonical)

    def run(self, seeds) -> list:
        from ..driver import optimize  # noqa: PLC0415

        job, b = self.job, self.backend
        rows = []
        for seed in seeds:
            bstar, eps = draw(job, np.random.default_rng(seed))
            ztzb = self.ZtZ @ bstar
            zte = _zt(job, eps)
            b.set_response(ztzb + zte, self.ZtX.T @ bstar + job.X.T @ eps,
                           bstar @ ztzb + 2 * bstar @ zte + eps @ eps, job.beta)
            opt = optimize(self.problem, job.theta, method="newton")
            sol = b.solution(opt.theta)
            row = [*sol.theta, np.sqrt(sol.sigma2), *sol.beta, float(opt.converged)]
            if job.statistic is not None:
                row += list(np.atleast_1d(job.statistic(sol)))
            rows.append(row)
        return rows


def _run_chunk(job: _Job, seeds) -> list:
    if job.threads is not None:
        import numba  # noqa: PLC0415
        from threadpoolctl import threadpool_limits  # noqa: PLC0415

        numba.set_num_threads(job.threads)
        with threadpool_limits(job.threads):
            return _Worker(job).run(seeds)
    return _Worker(job).run(seeds)


def make_job(result, statistic=None) -> _Job:
    """The design as the crossproducts hold it: with prior weights, rows scaled by √w (the residuals
    of unit variance, ε ~ N(0, σ²I) there: N(0, σ²/w) in the data's scale)."""
    model = result.model
    frame = model.frame
    return _Job(layout=model.layout, cp=model.crossprod, codes=[t.codes for t in frame.terms],
                Xterms=[whiten(frame.sqrtw, t.X)[0] for t in frame.terms], X=whiten(frame.sqrtw, frame.X)[0],
                reml=result.reml, backend=model.backend.name,
                theta=result.theta.to_numpy(), beta=result.fe_params.to_numpy(), sigma=result.sigma,
                names=list(result.theta.index) + ["sigma"] + list(result.fe_params.index), statistic=statistic)


def simulate(result, n: int = 1, seed=None) -> np.ndarray:
    """``n`` responses simulated from the fitted model (nobs × n), lme4's ``simulate``: replicate i
    is the one :func:`bootstrap` refits with the same seed; with prior weights the residuals have
    variance σ̂²/w, and the offset is added."""
    job = make_job(result)
    seeds = np.random.SeedSequence(seed).spawn(n)
    mean = job.X @ job.beta
    out = np.empty((job.X.shape[0], n))
    for i, s in enumerate(seeds):
        bstar, eps = draw(job, np.random.default_rng(s))
        eta = mean + eps
        for k, (codes, Xk) in enumerate(zip(job.codes, job.Xterms)):
            p, off = job.layout.p[k], job.layout.col_offset[k]
            bk = bstar[off:off + p * job.layout.nlevels[k]].reshape(-1, p)
            eta += np.einsum("ij,ij->i", Xk, bk[codes])
        out[:, i] = eta
    frame = result.model.frame
    if frame.sqrtw is not None:  # back from the scaled rows
        out /= frame.sqrtw[:, None]
    if frame.offset is not None:
        out += frame.offset[:, None]
    return out


class BootstrapResult:
    """Replicates of a parametric bootstrap: ``replicates`` (one row each: θ, sigma, β, and the
    statistic's values), ``se``, :meth:`confint` (percentile intervals, lme4's ``type = "perc"``)."""

    def __init__(self, table: pd.DataFrame, estimate: pd.Series):
        self.converged = table.pop("converged").astype(bool)
        self.replicates = table
        self.estimate = estimate

    @property
    def se(self) -> pd.Series:
        return self.replicates.std(ddof=1)

    def confint(self, level: float = 0.95, parm=None) -> pd.DataFrame:
        lo, hi = (1 - level) / 2, (1 + level) / 2
        tab = self.replicates if parm is None else self.replicates[list(parm)]
        lower, upper = interval_columns(level)
        return pd.DataFrame({lower: tab.quantile(lo), upper: tab.quantile(hi)})


def _sd_cor_columns(result, table: pd.DataFrame) -> pd.DataFrame:
    """θ and σ columns turned into lme4's sd_/cor_ parameters."""
    from .profile import varpar, varpar_names  # noqa: PLC0415

    layout = result.model.layout
    theta = table[list(result.theta.index)].to_numpy()
    vals = [varpar(layout, t, s)[:-1] for t, s in zip(theta, table["sigma"].to_numpy())]
    return pd.DataFrame(vals, columns=varpar_names(layout)[:-1], index=table.index)


def bootstrap(result, n: int = 1000, seed=None, n_jobs: int = 1, statistic=None, statistic_names=None,
              progress: bool | None = None) -> BootstrapResult:
    """``n`` parametric bootstrap refits (lme4's ``bootMer``), in ``n_jobs`` processes.

    ``statistic(solution)`` (optional, picklable) maps a replicate's
    :class:`~sparselmm.backends.base.Solution` (theta, beta, sigma2, u, …) to
    more values to record. ``progress``: a tqdm bar (None: when tqdm is
    installed and n ≥ 200).
    """
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n must be a positive integer, not {n!r}")
    if result.model.stream is not None:
        raise ValueError("the parametric bootstrap simulates every row in memory: it is not available for a model "
                         "read in pieces (profile intervals are: confint(method='profile'))")
    n_jobs = os.cpu_count() or 1 if n_jobs in (-1, None) else int(n_jobs)
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer or -1, not {n_jobs!r}")
    job = make_job(result, statistic)
    seeds = np.random.SeedSequence(seed).spawn(n)
    size = max(1, min(50, n // (4 * n_jobs) or 1))
    chunks = [seeds[i:i + size] for i in range(0, n, size)]
    bar = _progress(n, progress)
    rows = []
    if n_jobs == 1:
        worker = _Worker(job)
        for chunk in chunks:
            rows += worker.run(chunk)
            bar.update(len(chunk))
    else:
        job.threads = 1
        with ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("spawn")) as pool:
            for chunk, out in zip(chunks, pool.map(_run_chunk, [job] * len(chunks), chunks)):
                rows += out
                bar.update(len(chunk))
    bar.close()
    extra = len(rows[0]) - len(job.names) - 1
    stat_names = list(statistic_names) if statistic_names is not None else [f"stat{i}" for i in range(extra)]
    if len(stat_names) != extra:
        raise ValueError(f"{len(stat_names)} statistic names for {extra} values")
    table = pd.DataFrame(rows, columns=job.names + ["converged"] + stat_names)
    varpar = _sd_cor_columns(result, table)
    fixed = list(result.fe_params.index)
    ordered = pd.concat([varpar, table[["sigma"] + fixed + stat_names + list(result.theta.index)],
                         table[["converged"]]], axis=1)
    from .profile import varpar as to_varpar  # noqa: PLC0415

    est = pd.Series(np.append(to_varpar(result.model.layout, result.theta.to_numpy(), result.sigma),
                              result.fe_params.to_numpy()), index=list(varpar.columns) + ["sigma"] + fixed)
    return BootstrapResult(ordered, est)


class _NoBar:
    def update(self, k):
        pass

    def close(self):
        pass


def _progress(n: int, progress: bool | None):
    if progress is False or (progress is None and n < 200):
        return _NoBar()
    try:
        from tqdm.auto import tqdm  # noqa: PLC0415
    except ImportError:
        if progress:
            raise ImportError("progress=True needs tqdm: pip install tqdm") from None
        return _NoBar()
    return tqdm(total=n, desc="bootstrap", unit="fit")
