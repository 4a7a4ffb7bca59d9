"""MovieLens shapes on a GPU: ``python -m benchmarks.gpu_ratings [--shapes 10M,25M] [--out DIR]``.

Each shape of :data:`sparselmm.datasets.RATINGS_SHAPES` is simulated (``simulate_ratings``; its time
is stated and excluded), set up on the CPU (crossproducts, L's pattern, the device's index: timed)
and fitted by maximum likelihood with ``device="cuda"``: the fit's wall time, its evaluations,
the seconds per phase (``DeviceBlockedBackend.phases``: each phase waits for the device's queued
work), the objective, θ and σ, and the peak of CuPy's memory pool, with the card's name. A small
fit of the same kind runs first (Numba's compilation and CuPy's kernels: excluded). Writes
``gpu_ratings.json`` and ``gpu_ratings.md`` to ``--out`` after each shape, so that a run cut short
keeps what it finished. Run by ``scripts/device_check.sh`` on a machine with a GPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _fit(shape: str, rows: int, users: int, items: int) -> dict:
    import cupy

    import sparselmm
    from sparselmm.datasets import RATINGS_FORMULA, simulate_ratings

    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    start = time.perf_counter()
    data = simulate_ratings(rows, users, items, seed=0)
    simulated = time.perf_counter() - start
    start = time.perf_counter()
    model = sparselmm.LinearMixedModel(RATINGS_FORMULA, data, reml=False, device="cuda")
    setup = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit(progress=True)
    fit = time.perf_counter() - start
    backend = model.backend
    out = {"shape": shape, "rows": rows, "users": users, "items": items, "simulate_seconds": simulated,
           "setup_seconds": setup, "fit_seconds": fit, "objective": float(result.objective),
           "theta": [float(t) for t in result.theta], "sigma": float(result.sigma),
           "converged": bool(result.converged), "factorizations": int(backend.nfactor),
           "phases": {k: round(v, 3) for k, v in backend.phases.items()},
           "gpu_pool_peak_gib": pool.total_bytes() / 2**30, "device": backend.ops.device_name}
    del model, result, backend, data
    gc.collect()
    pool.free_all_blocks()
    return out


def _table(rows: list[dict]) -> str:
    lines = ["| shape | rows | users × items | fit (wall) | factorizations | objective | GPU pool peak | setup (CPU) |"
             " simulated (excluded) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['rows']:,} | {r['users']:,} × {r['items']:,} | {r['fit_seconds']:.1f} s | "
                     f"{r['factorizations']} | {r['objective']:.6f} | {r['gpu_pool_peak_gib']:.1f} GiB | "
                     f"{r['setup_seconds']:.1f} s | {r['simulate_seconds']:.1f} s |")
    for r in rows:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(r["phases"].items(), key=lambda kv: -kv[1]))
        lines.append(f"\n{r['shape']} on {r['device']}: {phases}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="10M,25M", help="comma-separated keys of RATINGS_SHAPES")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    from sparselmm.datasets import RATINGS_SHAPES

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _fit("warm-up", 100_000, 3_000, 2_000)
    rows = []
    for shape in args.shapes.split(","):
        rows.append(_fit(shape, *RATINGS_SHAPES[shape]))
        (out / "gpu_ratings.json").write_text(json.dumps(rows, indent=2) + "\n")
        (out / "gpu_ratings.md").write_text(_table(rows))
        print(_table(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
