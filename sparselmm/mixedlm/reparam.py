"""The driver's problem in the door's θ: tied entries and entries held fixed.

The engine's θ is ``x_full[expand]``, where ``x_full`` is the door's θ (one
entry per variance component, however many terms it spans) and the
optimizer moves only the free entries of ``x_full``. So with S the 0/1
matrix of that map, objective(x) = f(c + S x), gradient S'∇f, Hessian
S'HS. EM updates a tied variance by pooling its terms (the mean of θ² over
all their levels); with entries held fixed there is no EM step.
"""

from __future__ import annotations

import numpy as np

from ..driver import Problem


def door_problem(engine: Problem, expand: np.ndarray, nlevels: np.ndarray, start: np.ndarray,
                 free: np.ndarray) -> Problem:
    """The problem over the free entries of the door's θ.

    Parameters
    ----------
    engine : Problem
        The engine's problem (objective, gradient, EM step, Hessian, canonical form).
    expand : ndarray of int
        Door θ index of each engine θ entry.
    nlevels : ndarray of int
        Levels of the engine term of each engine θ entry (EM's pooling weights).
    start : ndarray
        The door's θ; entries not free stay at these values.
    free : ndarray of bool
        Which door θ entries the optimizer moves.
    """
    nd = len(start)
    if np.array_equal(expand, np.arange(nd)) and free.all():
        return engine
    index = np.full(nd, -1, dtype=np.int64)
    index[free] = np.arange(int(free.sum()))
    col = index[expand]  # free entry of each engine entry (-1: fixed)
    S = np.zeros((len(expand), int(free.sum())))
    S[col >= 0, col[col >= 0]] = 1.0
    first = np.array([np.flatnonzero(expand == d)[0] for d in np.flatnonzero(free)], dtype=np.int64)

    def to_engine(x):
        full = start.copy()
        full[free] = x
        return full[expand]

    def gradient(x):
        return S.T @ engine.gradient(to_engine(x))

    def hessian(x, g):
        t = to_engine(x)
        return S.T @ engine.hessian(t, engine.gradient(t)) @ S

    def canonical(x):
        return engine.canonical(to_engine(x))[first]

    tied = S.sum(axis=0) > 1  # only variance components are tied: scalar terms, θ ≥ 0

    def em_step(x):
        t = engine.em_step(to_engine(x))
        return np.where(tied, np.sqrt(S.T @ (nlevels * t ** 2) / (S.T @ nlevels)), t[first])

    fixed_all = free.all()
    problem = Problem(objective=lambda x: engine.objective(to_engine(x)), lower=engine.lower[first],
                      gradient=gradient, hessian=hessian if engine.hessian else None,
                      em_step=em_step if fixed_all and engine.em_step else None,
                      canonical=canonical if fixed_all and engine.canonical else None)
    return problem
