"""sparselmm side by side with statsmodels and lme4, on this machine: ``make bench``.

    python -m benchmarks.compare [--quick] [--designs insteval,nested,crossed,ratings] [--timeout 600]
                                 [--ratings-timeout 3600] [--systems sparselmm,statsmodels,lme4]
                                 [--ml] [--only KEYS] [--out benchmarks/results] [--name comparison]

REML fits of lme4's InstEval and of the nested and crossed designs of
:mod:`sparselmm.datasets` at 10⁴, 10⁵ and 10⁶ rows (``--quick``: up to 10⁵),
and ML fits of the MovieLens-shaped ratings (``simulate_ratings``, the 1M and
10M shapes; ``--quick``: 1M), each in its own process: wall time of the fit
alone (data, imports and a warm-up fit excluded), peak RSS of the process
(``os.wait4``), and the criterion reached (sparselmm ``objective``, lme4
``REMLcrit`` or ``deviance``, statsmodels ``-2 llf``: the same criterion). A
fit still running ``--timeout`` s (ratings: ``--ratings-timeout`` s) after it
started is killed and reported; larger sizes of that design are then not run
for that system. statsmodels: ``groups="subject", re_formula="1 + time"``
(nested), one group with a variance component per factor (crossed; the
ratings are not run: that dense group would have 10⁶ rows × 9,746 levels).
lme4: ``Rscript benchmarks/compare_lme4.R`` on the data written to CSV.

Writes ``NAME.md`` (also printed), ``NAME.json`` and ``NAME.png`` (fit time
against rows, log-log) to ``--out``; ``make bench`` runs every design,
``make bench-ratings`` the ratings alone (``ratings_comparison``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSTEMS = ("sparselmm", "statsmodels", "lme4")
SETUP_GRACE = 600.0  # seconds allowed before the timed fit starts (data, imports, warm-up)
POLL = 0.05

# design -> (lme4 formula, statsmodels fixed part, grouping factors, categorical covariates)
DESIGNS = {
    "insteval": ("y ~ 1 + service + (1|s) + (1|d) + (1|dept)", "y ~ 1 + service", ["s", "d", "dept"],
                 ["service"]),
    "crossed": ("y ~ x + treat + (1|student) + (1|item) + (1|dept)", "y ~ x + treat",
                ["student", "item", "dept"], ["treat"]),
    "nested": ("y ~ time + (1 + time|subject)", "y ~ time", ["subject"], []),
    "ratings": ("rating ~ 1 + (1|user) + (1|item)", "rating ~ 1", ["user", "item"], []),
}
ML_DESIGNS = {"ratings"}  # fitted by maximum likelihood, as MixedModels.jl's MovieLens benchmarks
INSTEVAL_ROWS = 73_421


@dataclass(frozen=True)
class Workload:
    """One model on one data set: ``design`` in :data:`DESIGNS`, ``n`` rows (synthetic)."""

    design: str
    n: int = INSTEVAL_ROWS
    ml: bool = False  # every design by maximum likelihood (``--ml``)

    @property
    def key(self) -> str:
        base = self.design if self.design == "insteval" else f"{self.design}_{self.n}"
        return base + ("-ml" if self.ml and self.design not in ML_DESIGNS else "")

    @classmethod
    def from_key(cls, key: str) -> "Workload":
        key, ml = (key[:-3], True) if key.endswith("-ml") else (key, False)
        design, _, n = key.partition("_")
        return cls(design, int(n), ml) if n else cls(design, ml=ml)

    @property
    def formula(self) -> str:
        return DESIGNS[self.design][0]

    @property
    def reml(self) -> bool:
        return not self.ml and self.design not in ML_DESIGNS

    def load(self):
        """The data frame (the synthetic designs with seed 0)."""
        from sparselmm.datasets import RATINGS_SHAPES, load_insteval, simulate_crossed, simulate_nested, simulate_ratings

        if self.design == "insteval":
            return load_insteval()
        if self.design == "ratings":
            return simulate_ratings(*next(s for s in RATINGS_SHAPES.values() if s[0] == self.n), seed=0)
        return (simulate_crossed if self.design == "crossed" else simulate_nested)(self.n, seed=0)


def workloads(quick: bool, designs=tuple(DESIGNS)) -> list[Workload]:
    """InstEval, then each synthetic design by increasing size (≤ 10⁵ rows, the ratings' 1M shape, if
    ``quick``), of the given ``designs``."""
    from sparselmm.datasets import RATINGS_SHAPES

    sizes = [10_000, 100_000] + ([] if quick else [1_000_000])
    ratings = [RATINGS_SHAPES["1M"][0]] + ([] if quick else [RATINGS_SHAPES["10M"][0]])
    work = [Workload("insteval")] + [Workload(d, n) for d in ("nested", "crossed") for n in sizes]
    return [w for w in work + [Workload("ratings", n) for n in ratings] if w.design in designs]


def _child(system: str, key: str, out: str) -> None:
    """Body of ``python -m benchmarks.compare --child SYSTEM KEY OUT``: one timed fit, JSON to OUT."""
    warnings.simplefilter("ignore")
    workload = Workload.from_key(key)
    data = workload.load()
    if system == "sparselmm":
        import sparselmm
        from benchmarks._common import warm_jit

        warm_jit()
        version = f"sparselmm {metadata.version('sparselmm')}"

        def fit():
            res = sparselmm.fit(workload.formula, data, reml=workload.reml, progress=False)
            return res.objective, bool(res.converged)
    else:
        import statsmodels
        from statsmodels.regression.mixed_linear_model import MixedLM
        from sparselmm.datasets import simulate_nested

        MixedLM.from_formula("y ~ time", simulate_nested(200), groups="subject").fit(reml=True)
        version = f"statsmodels {statsmodels.__version__}"
        _, fixed, groups, _ = DESIGNS[workload.design]
        if workload.design == "nested":
            kwargs = dict(groups=groups[0], re_formula="1 + time")
        else:
            data["one"] = 1
            kwargs = dict(groups="one", re_formula="0", vc_formula={g: f"0 + C({g})" for g in groups})

        def fit():
            res = MixedLM.from_formula(fixed, data, **kwargs).fit(reml=workload.reml)
            return -2.0 * res.llf, bool(res.converged)

    Path(out + ".started").touch()
    try:
        t0 = time.perf_counter()
        objective, converged = fit()
        record = dict(status="ok", time=time.perf_counter() - t0, objective=objective, converged=converged)
    except MemoryError:
        record = dict(status="oom")
    Path(out).write_text(json.dumps(dict(record, version=version)))


@lru_cache(maxsize=1)
def lme4_available() -> bool:
    """Whether ``Rscript`` is on the PATH and can load lme4."""
    if shutil.which("Rscript") is None:
        return False
    probe = ["Rscript", "-e", 'quit(status = !requireNamespace("lme4", quietly = TRUE))']
    return subprocess.run(probe, capture_output=True).returncode == 0


def run_system(system: str, workload: Workload, timeout: float, workdir: str | Path,
               csv: str | Path | None = None) -> dict:
    """Fit ``workload`` with ``system`` in a child process; kill it ``timeout`` s into the fit.

    Parameters
    ----------
    system : {"sparselmm", "statsmodels", "lme4"}
    workload : Workload
    timeout : float
        Seconds the fit itself may take.
    workdir : path
        Directory for the child's result file and logs.
    csv : path, optional
        The workload's data as CSV (lme4 only; written here if None).

    Returns
    -------
    dict
        ``status`` ("ok", "timeout", "oom", "error", "not installed"), ``time`` (s),
        ``peak_mb`` (peak RSS of the child), ``objective``, ``converged``, ``message``.
    """
    workdir = Path(workdir)
    out = workdir / f"{system}-{workload.key}.json"
    started = Path(str(out) + ".started")
    for path in (out, started):
        path.unlink(missing_ok=True)
    if system == "lme4":
        if not lme4_available():
            return dict(status="not installed")
        if csv is None:
            csv = workdir / f"{workload.key}.csv"
            workload.load().to_csv(csv, index=False)
        cmd = ["Rscript", str(HERE / "compare_lme4.R"), str(csv), workload.formula,
               ",".join(DESIGNS[workload.design][2] + DESIGNS[workload.design][3]), str(out),
               "TRUE" if workload.reml else "FALSE"]
    else:
        cmd = [sys.executable, "-m", "benchmarks.compare", "--child", system, workload.key, str(out)]
    log = open(workdir / f"{system}-{workload.key}.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent,
                            start_new_session=True)
    deadline, fit_started, killed = time.monotonic() + SETUP_GRACE + timeout, False, False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if not fit_started and started.exists():  # the child is about to start the fit
            deadline = started.stat().st_mtime - time.time() + time.monotonic() + timeout
            fit_started = True
        if not killed and time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
        time.sleep(POLL)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    log.close()
    record = dict(peak_mb=usage.ru_maxrss / 1024.0)  # Linux: kilobytes
    if killed:
        return dict(record, status="timeout", time=timeout)
    if out.exists():
        record.update(json.loads(out.read_text()))
        if record["status"] == "ok" and record["time"] > timeout:  # finished between two polls
            record.update(status="timeout", time=timeout)
        return record
    if code == -signal.SIGKILL:  # not by us: the kernel's out-of-memory killer
        return dict(record, status="oom")
    tail = (workdir / f"{system}-{workload.key}.log").read_text(errors="replace").strip().splitlines()
    return dict(record, status="error", message=tail[-1] if tail else f"exit code {code}")


def machine() -> dict:
    """CPU model, cores, RAM and the BLAS CHOLMOD uses."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
        kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
        ram = f"{kb / 1024**2:.0f} GB RAM"
    except (OSError, StopIteration):
        ram = "RAM unknown"
    query = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "libopenblas0-pthread"],
                           capture_output=True, text=True) if shutil.which("dpkg-query") else None
    openblas = query is not None and "install ok installed" in query.stdout
    blas = "system OpenBLAS via CHOLMOD" if openblas else "the system BLAS CHOLMOD links (not OpenBLAS?)"
    return dict(cpu=cpu, cores=os.cpu_count(), ram=ram, blas=blas, python=platform.python_version(),
                load=f"{os.getloadavg()[0]:.1f}")


def _fmt_time(r: dict) -> str:
    messages = {"timeout": f"did not finish in {r.get('time', 0):g} s", "oom": "out of memory",
                "not installed": "not installed", "skipped": r.get("message", "not run")}
    if r["status"] == "ok":
        return f"{r['time']:.2f} s" if r["time"] < 100 else f"{r['time']:.0f} s"
    return messages.get(r["status"], f"error: {r.get('message', '')}"[:80])


def _fmt_mem(r: dict) -> str:
    mb = r.get("peak_mb")
    if mb is None or r["status"] in ("skipped", "not installed"):
        return "—"
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def _fmt_obj(r: dict) -> str:
    if r["status"] != "ok":
        return "—"
    return f"{r['objective']:.4f}" + ("" if r.get("converged", True) else " ⚠")


def table(results: list[dict], systems: list[str], info: dict, timeout: float) -> str:
    """The Markdown report: machine header, then one row per workload."""
    versions = sorted({r["version"] for row in results for r in row["fits"].values() if "version" in r})
    lines = [
        "## sparselmm, statsmodels and lme4 side by side",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']}; BLAS: {info['blas']}. "
        f"Python {info['python']}; {'; '.join(versions)}. Load average at start: {info['load']}.",
        f"{'ML fits' if info.get('ml') else 'REML fits (ratings: ML)'}, one run each; fit time only (data, imports "
        "and a warm-up fit excluded); "
        f"peak memory is the RSS of the fitting process; timeout {timeout:g} s per fit"
        + (f" ({info['ratings_timeout']:g} s for the ratings)" if "ratings_timeout" in info else "") + ". "
        "Δ = objective − sparselmm's (REML criterion or ML deviance, lower is better); "
        "× = time / sparselmm's time; ⚠ = the system reported non-convergence.",
        "",
    ]
    head = ["workload", "rows", "levels"]
    for s in systems:
        head += [f"{s} time", f"{s} memory", f"{s} objective"]
        if s != "sparselmm":
            head += [f"{s} Δ", f"{s} ×"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results:
        base = row["fits"].get("sparselmm", {})
        cells = [row["workload"], f"{row['rows']:,}", row["levels"]]
        for s in systems:
            r = row["fits"][s]
            cells += [_fmt_time(r), _fmt_mem(r), _fmt_obj(r)]
            if s == "sparselmm":
                continue
            both = r["status"] == "ok" and base.get("status") == "ok"
            cells += [f"{r['objective'] - base['objective']:+.1e}" if both else "—",
                      f"{r['time'] / base['time']:.2g}×" if both else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], systems: list[str], timeout: float, path: Path) -> None:
    """Log-log fit time against rows: a line per system and design; × marks a timeout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    styles = {"nested": "-o", "crossed": "--s", "insteval": "*", "ratings": ":^"}
    for i, s in enumerate(systems):
        color = f"C{i}"
        for design, style in styles.items():
            rows = [row for row in results if row["design"] == design]
            ok = [(row["rows"], row["fits"][s]["time"]) for row in rows if row["fits"][s]["status"] == "ok"]
            if ok:
                ax.plot(*zip(*ok), style, color=color, ms=10 if design == "insteval" else 6,
                        label=f"{s}, {design}")
            out = [row["rows"] for row in rows if row["fits"][s]["status"] in ("timeout", "oom")]
            ax.plot(out, [timeout] * len(out), "x", color=color, ms=9, mew=2)
    ax.axhline(timeout, color="grey", lw=0.8, ls=":")
    ax.text(1.1e4, timeout * 1.1, f"timeout ({timeout:g} s); × = did not finish", color="grey", fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="rows", ylabel="fit time (s)",
           title="Fit time (REML; ratings ML): " + ", ".join(systems))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(work: list[Workload], systems: list[str], timeout: float, progress=print,
            ratings_timeout: float | None = None) -> list[dict]:
    """Run every system on every workload; one result row per workload.

    After a system times out or runs out of memory on a design, its larger
    sizes of that design are marked ``skipped`` (with the reason) instead of run.
    """
    gave_up_why = {("statsmodels", "ratings"): "not run (one dense group: rows × 9,746 levels)"}
    results, gave_up = [], dict(gave_up_why)
    with tempfile.TemporaryDirectory(prefix="sparselmm-compare-") as tmp:
        for w in work:
            data = w.load()
            levels = " × ".join(f"{data[g].nunique():,}" for g in DESIGNS[w.design][2])
            csv = None
            if "lme4" in systems and lme4_available():
                csv = Path(tmp) / f"{w.key}.csv"
                data.to_csv(csv, index=False)
            del data
            row = dict(workload=w.key, design=w.design, rows=w.n, levels=levels, fits={})
            for s in systems:
                if (s, w.design) in gave_up:
                    r = dict(status="skipped", message=gave_up[s, w.design])
                else:
                    limit = ratings_timeout if w.design == "ratings" and ratings_timeout else timeout
                    r = run_system(s, w, limit, tmp, csv)
                    if r["status"] in ("timeout", "oom"):
                        why = "did not finish" if r["status"] == "timeout" else "out of memory"
                        gave_up[s, w.design] = f"not run ({why} at {w.n:,} rows)"
                row["fits"][s] = r
                progress(f"{w.key:>16} {s:>12}: {_fmt_time(r)}, {_fmt_mem(r)}, objective {_fmt_obj(r)}")
            if csv is not None:
                csv.unlink()
            results.append(row)
    return results


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="only InstEval and sizes up to 1e5 rows")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per fit (default 600)")
    parser.add_argument("--ratings-timeout", type=float, default=3600.0,
                        help="seconds per fit of the ratings (default 3600)")
    parser.add_argument("--designs", default=",".join(DESIGNS), help="comma-separated subset of %(default)s")
    parser.add_argument("--name", default="comparison", help="file name of the results, without suffix")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of %(default)s")
    parser.add_argument("--out", default=str(HERE / "results"), help="output directory")
    parser.add_argument("--ml", action="store_true", help="every design by maximum likelihood")
    parser.add_argument("--only", help="comma-separated workload keys to run (e.g. insteval,nested_1000000,"
                                       "ratings_1000209), of those --designs and --quick select")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    if set(designs) - set(DESIGNS):
        parser.error(f"unknown designs: {', '.join(sorted(set(designs) - set(DESIGNS)))}")
    info = machine()
    work = workloads(args.quick, designs)
    if args.ml:
        from dataclasses import replace

        work = [replace(w, ml=True) for w in work]
        info["ml"] = True
    if args.only:
        only = {k.strip() for k in args.only.split(",")}
        work = [w for w in work if w.key in only]
    if any(w.design == "ratings" for w in work):
        info["ratings_timeout"] = args.ratings_timeout
    results = compare(work, systems, args.timeout, progress=lambda m: print(m, file=sys.stderr, flush=True),
                      ratings_timeout=args.ratings_timeout)
    report = table(results, systems, info, args.timeout)
    (out / f"{args.name}.md").write_text(report)
    (out / f"{args.name}.json").write_text(json.dumps(
        dict(machine=info, timeout=args.timeout, quick=args.quick, systems=systems, results=results),
        indent=1))
    plot(results, systems, args.timeout, out / f"{args.name}.png")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
