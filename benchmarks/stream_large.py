"""Rows beyond memory: a crossed design of 10⁸ rows in Parquet files, fitted a piece at a time, next
to the in-memory fits of 10⁶ and 10⁷ rows and a 10⁷-row fit on a ``distributed.LocalCluster``.

    python -m benchmarks.stream_large [--rows 100000000] [--dir DIR] [--keep] [--out benchmarks/results]

The data: ``datasets.simulate_crossed_pieces`` (10,000 students × 1,000 items × 20 departments,
``y ~ x + treat + (1|student) + (1|item) + (1|dept)``, REML), 10⁶ rows a Parquet file, written to
``--dir`` (a temporary directory unless given; kept with ``--keep``, and reused when its files
are there). Each fit runs in its own process: wall time from the data's path to the result
(reading included), peak RSS of that process (``os.wait4``; a cluster's workers are processes of
their own, not counted), the passes' rows per second, the criterion reached. The 10⁷-row fits
read the first 10 files: in memory (one DataFrame), in pieces, and through Dask on 2 workers; they
must reach the same criterion.

Writes ``stream_large.md`` (also printed) and ``stream_large.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._common import save_results

HERE = Path(__file__).resolve().parent
FORMULA = "y ~ x + treat + (1|student) + (1|item) + (1|dept)"
PIECE = 1_000_000


def write(directory: Path, rows: int) -> tuple[list[Path], float]:
    """The Parquet files of ``rows`` rows (made if missing) and the seconds it took to write them."""
    from sparselmm.datasets import simulate_crossed_pieces

    paths = [directory / f"crossed-{i:04d}.parquet" for i in range(-(-rows // PIECE))]
    if all(p.exists() for p in paths):
        return paths, 0.0
    start = time.perf_counter()
    for path, piece in zip(paths, simulate_crossed_pieces(rows, PIECE, seed=0)):
        piece.to_parquet(path)
    return paths, time.perf_counter() - start


def _child(kind: str, listing: str, out: str) -> None:
    """One fit, timed from the paths: ``memory`` (one DataFrame), ``pieces`` (the files), ``dask``."""
    import warnings

    import pandas as pd

    import sparselmm

    warnings.simplefilter("ignore")
    paths = Path(listing).read_text().split()
    record = {}
    start = time.perf_counter()
    if kind == "memory":
        data = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
        record["read_seconds"] = time.perf_counter() - start
        model = sparselmm.LinearMixedModel(FORMULA, data)
    elif kind == "pieces":
        model = sparselmm.LinearMixedModel(FORMULA, paths)
        record["pass_seconds"] = model.stream.seconds
    else:
        import dask.dataframe as dd
        import distributed

        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
        start = time.perf_counter()  # the cluster's start-up is not the fit's
        model = sparselmm.LinearMixedModel(FORMULA, dd.read_parquet(paths))
        record["pass_seconds"] = model.stream.seconds
    result = model.fit(progress=False)
    record.update(seconds=time.perf_counter() - start, objective=result.objective, rows=result.nobs,
                  backend=model.backend.name, setup_seconds=model.setup_seconds)
    if kind == "dask":
        client.close()
        cluster.close()
    Path(out).write_text(json.dumps(record))


def run(kind: str, paths: list[Path], workdir: Path) -> dict:
    listing, out = workdir / f"{kind}-{len(paths)}.txt", workdir / f"{kind}-{len(paths)}.json"
    listing.write_text("\n".join(map(str, paths)))
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.stream_large", "--child", kind, str(listing),
                             str(out)], cwd=HERE.parent)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return dict(kind=kind, files=len(paths), status="error")
    return dict(json.loads(out.read_text()), kind=kind, files=len(paths), status="ok",
                peak_gb=usage.ru_maxrss / 1024**2)


def table(rows: list[dict]) -> str:
    names = {"memory": "one DataFrame (read, then fit)", "pieces": "Parquet files, in pieces",
             "dask": "Dask, LocalCluster of 2 workers"}
    lines = ["| rows | source | time | peak memory | pass 1 | pass 2 | criterion |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['files'] * PIECE:,} | {names[r['kind']]} | {r['status']} | | | | |")
            continue
        passes = ["", ""]
        if "pass_seconds" in r:
            passes = [f"{s:.1f} s ({r['rows'] / s / 1e6:.1f}M rows/s)" for s in r["pass_seconds"]]
        lines.append(f"| {r['rows']:,} | {names[r['kind']]} | {r['seconds']:.1f} s | {r['peak_gb']:.2f} GB | "
                     f"{passes[0]} | {passes[1]} | {r['objective']:.6f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stream_large", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--dir", help="directory of the Parquet files (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    directory = Path(args.dir or tempfile.mkdtemp(prefix="sparselmm-stream-"))
    directory.mkdir(parents=True, exist_ok=True)
    paths, wrote = write(directory, args.rows)
    print(f"{len(paths)} Parquet files in {directory.name}: written in {wrote:.0f} s", file=sys.stderr, flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, files in (("memory", 1), ("memory", 10), ("pieces", 10), ("dask", 10), ("pieces", len(paths))):
            if files > len(paths):
                continue
            results.append(run(kind, paths[:files], Path(tmp)))
            print(table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    if not (args.keep or args.dir):
        for p in paths:
            p.unlink()
        directory.rmdir()
    save_results(args.out, "stream_large", dict(rows=args.rows, write_seconds=wrote, fits=results),
                 f"## {args.rows:,} rows of a crossed design, read in pieces\n\n`{FORMULA}`, REML; 10,000 students × "
                 f"1,000 items × 20 departments; {len(paths)} Parquet files of 10⁶ rows (written in {wrote:.0f} s). "
                 "Time from the paths to the result; peak RSS of the fitting process.\n\n" + table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
