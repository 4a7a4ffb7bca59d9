"""Blocked or CHOLMOD: each measured on a table of crossed designs, against the cost model that
chooses between them (``sparselmm.cost.prefer_blocked``).

    python -m benchmarks.backend_costs [--out benchmarks/results] [--quick]

Designs: ``y ~ 1 + (1|user) + (1|item)``, 4 users per item, 20 ratings per user, each user
rating items within a window around a point of the item circle: a window of ±w items makes the
block after the users (the items') banded, the wider the fuller; "all" is MovieLens-like (every
item). Per design: the block's order m, its density and its factor's (reverse Cuthill–McKee
order), the pairs of rows of L21, the sparse
backend's multiply-adds, then the wall time of one iteration (objective and gradient at a new θ,
after one at another θ: the best of two) on each backend, and the estimates of both.

Writes ``backend_costs.json`` and ``backend_costs.md`` to ``--out``; ``tests/data/backend_costs.json``
is a copy, which ``tests/test_cost.py`` checks the choice against.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._common import save_results

HERE = Path(__file__).resolve().parent
FORMULA = "y ~ 1 + (1|user) + (1|item)"
ORDERS = (500, 1500, 3000)
WINDOWS = (2, 20, 200, None)  # None: any item
USERS_PER_ITEM, PER_USER = 4, 20


def banded(n_items: int, window: int | None, seed: int = 0) -> pd.DataFrame:
    """Users × items, each user's ratings within ±``window`` items of a point on the item circle."""
    rng = np.random.default_rng(seed)
    n_users = USERS_PER_ITEM * n_items
    user = np.repeat(np.arange(n_users), PER_USER)
    if window is None:
        item = rng.integers(0, n_items, len(user))
    else:
        centre = rng.integers(0, n_items, n_users)
        item = (centre[user] + rng.integers(-window, window + 1, len(user))) % n_items
    y = rng.normal(0, 0.5, n_users)[user] + rng.normal(0, 0.5, n_items)[item] + rng.normal(size=len(user))
    return pd.DataFrame({"y": y, "user": pd.Categorical(user), "item": pd.Categorical(item)})


def _iteration(backend, thetas) -> float:
    """Best wall time of an objective and gradient at a θ not seen before."""
    best = np.inf
    for theta in thetas:
        t0 = time.perf_counter()
        backend.objective(theta)
        backend.gradient(theta)
        best = min(best, time.perf_counter() - t0)
    return best


def measure(n_items: int, window: int | None) -> dict:
    import sparselmm
    from sparselmm import cost
    from sparselmm.backends import BlockedBackend
    from sparselmm.backends.blocked import schur_density, schur_factor_fill, schur_pairs
    from sparselmm.lapack import fit_blas_threads

    model = sparselmm.LinearMixedModel(FORMULA, banded(n_items, window), reml=False, backend="sparse")
    layout, cp = model.layout, model.crossprod
    sparse = model.backend
    blocked = BlockedBackend(layout, cp, reml=False)
    m = layout.q - int(layout.col_offset[1])
    pairs, density = schur_pairs(layout, cp), schur_density(layout, cp)
    fill = schur_factor_fill(layout, cp, pairs, enough=1.0)
    thetas = [np.array([0.5, 0.45]), np.array([0.6, 0.55]), np.array([0.7, 0.65])]
    with fit_blas_threads(None):
        times = {name: _iteration(b, thetas) for name, b in (("blocked", blocked), ("sparse", sparse))}
    rate = cost.dense_rate()
    return dict(design=f"{n_items} items, window {'all' if window is None else f'±{window}'}", m=m,
                rows=int(model.crossprod.n), density=density, factor_fill=fill, pairs=pairs,
                sparse_multiply_adds=sparse.flops,
                sparse_ordering=sparse.ordering, blocked_storage=blocked.storage, rate=rate,
                blocked_seconds=times["blocked"], sparse_seconds=times["sparse"],
                q=layout.q, blocked_estimate=cost.blocked_iteration_seconds(m, pairs, layout.q, rate),
                sparse_estimate=cost.sparse_iteration_seconds(sparse.flops, layout.q, rate),
                choice="blocked" if cost.prefer_blocked(m, pairs, density, layout.q, sparse.flops, rate, fill)
                else "sparse",
                faster="blocked" if times["blocked"] < times["sparse"] else "sparse")


def table(rows: list[dict]) -> str:
    lines = ["| design | m | density | factor fill | pairs | blocked | sparse | estimate blocked | estimate sparse | "
             "faster | chosen |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['design']} | {r['m']:,} | {r['density']:.3f} | {r['factor_fill']:.3f} | {r['pairs']:.3g} | "
                     f"{r['blocked_seconds'] * 1e3:.1f} ms | {r['sparse_seconds'] * 1e3:.1f} ms | "
                     f"{r['blocked_estimate'] * 1e3:.1f} ms | {r['sparse_estimate'] * 1e3:.1f} ms | "
                     f"{r['faster']} ({max(r['blocked_seconds'], r['sparse_seconds']) / min(r['blocked_seconds'], r['sparse_seconds']):.1f}×) "
                     f"| {r['choice']}{'' if r['choice'] == r['faster'] else ' ✗'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backend_costs", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--quick", action="store_true", help="the two smaller orders only")
    args = parser.parse_args(argv)
    rows = []
    for n_items in ORDERS[:2] if args.quick else ORDERS:
        for window in WINDOWS:
            rows.append(measure(n_items, window))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    save_results(args.out, "backend_costs", rows,
                 "## Blocked or CHOLMOD: one iteration (objective and gradient) measured, and estimated\n\n"
                 f"`{FORMULA}`, ML; {USERS_PER_ITEM} users per item, {PER_USER} ratings per user. "
                 "✗: the cost model chose the slower.\n\n" + table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
