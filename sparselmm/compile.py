"""Compile every kernel ahead of use: ``python -m sparselmm.compile``.

``make install`` runs it once, ``make test`` again (seconds: it rebuilds
only what a changed kernel made stale). It fits a battery of models that
takes every path of the package through its kernels: each backend (dense
per-group with group sizes 1 to 5, blocked with a scalar and a vector first
term, CHOLMOD, the automatic choice), each serial twin and its parallel
kernel (the blocked backend's forced: it takes them from 10⁷ pairs of
rows), the crossproducts of one and several terms, conditional variances,
the bootstrap's response swap, and statsmodels' door when statsmodels is
installed. Then:

* Numba's on-disk cache (``cache=True``) holds every signature used:
  ``__pycache__`` beside each kernel module, or, where the package is not
  writable, Numba's per-user cache directory (``NUMBA_CACHE_DIR`` chooses
  another). A stale entry is recompiled; an unwritable cache costs only
  the compilation.
* The serial signatures, recorded in ``kernels/signatures.json`` (``--record``
  finds them anew, every kernel through Numba), are compiled ahead of time
  by ``numba.pycc`` first, into extension modules ``kernels/_aot_<i>`` with
  an index by argument types (``kernels/_aot.json``), rebuilt only when the
  signatures, the kernels' sources, Python or Numba change; the battery then
  compiles only the parallel kernels (92 s from scratch on 2 cores). A
  signature the record lacks is compiled by Numba and reported. A moderate model runs only
  serial kernels, so its fit needs no Numba: importing Numba and its first
  dispatch cost 0.3 s, more than the fit. pycc compiles no parallel kernels
  (those stay with the JIT cache) and is pending deprecation: without a
  usable build (``--no-aot``, pycc gone, a stale index) every kernel comes
  from the JIT cache. Its generic x86-64 code ran InstEval's Schur pass as
  fast as the JIT's (4.6 ms against 5.3 ms).
* The package's bytecode (``compileall``), which imports otherwise
  recompile where ``PYTHONDONTWRITEBYTECODE`` is set.

``tests/test_compile.py`` fails if a fit compiles a kernel, or if a
moderate fit imports Numba.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

#: The serial kernel signatures the battery uses (``--record``), which the AOT modules are built from.
SIGNATURES = Path(__file__).resolve().parent / "kernels" / "signatures.json"

#: Groups (or levels) of the large models, 40 rows each: enough for the parallel kernels
#: (``kernels.PARALLEL_MIN_WORK`` groups, ``crossprod.PARALLEL_MIN_ROWS`` rows).
_MANY = 5200
_ROWS_EACH = 40


def _nested(n_groups: int, per_group: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    g = np.repeat(np.arange(n_groups), per_group)
    X = rng.standard_normal((n, 4))
    b = rng.standard_normal((n_groups, 5)) * 0.5
    y = 1 + X @ [0.5, -0.3, 0.2, 0.1] + b[g, 0] + (b[g, 1:] * X).sum(axis=1) + rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "x4": X[:, 3],
                         "g": pd.Categorical(g.astype(str))})


def _crossed(n_a: int, n: int, seed: int, n_b: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = np.concatenate([np.arange(n_a), rng.integers(0, n_a, n - n_a)])
    b = rng.integers(0, n_b, n)
    c = b % 7
    x = rng.standard_normal(n)
    y = x + rng.standard_normal(n_a)[a] + rng.standard_normal(n_b)[b] + rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x": x, "a": pd.Categorical(a.astype(str)), "b": pd.Categorical(b.astype(str)),
                         "c": pd.Categorical(c.astype(str))})


NESTED = ["y ~ x1 + (1|g)", "y ~ x1 + (1 + x1|g)", "y ~ x1 + (1 + x1 + x2|g)", "y ~ x1 + (1 + x1 + x2 + x3|g)",
          "y ~ x1 + (1 + x1 + x2 + x3 + x4|g)", "y ~ x1 + (1|g) + (0 + x1|g)"]
CROSSED = ["y ~ x + (1|a) + (1|b) + (1|c)", "y ~ x + (1 + x|a) + (1|b)", "y ~ x + (1|a) + (1 + x|b)"]


def workloads():
    """(label, formula, data, backend) of every fit :func:`main` runs."""
    for n_groups in (40, _MANY):
        data = _nested(n_groups, 6 if n_groups < _MANY else _ROWS_EACH, seed=n_groups)
        for formula in NESTED:
            yield f"nested {n_groups} groups", formula, data, "dense"
        yield f"nested {n_groups} groups", NESTED[1], data, "sparse"
    for n_a in (60, _MANY):
        data = _crossed(n_a, 4 * n_a, seed=n_a)
        for formula in CROSSED:
            for backend in ("blocked", "sparse"):
                yield f"crossed {n_a} levels", formula, data, backend
        # the choice of backend samples the Schur complement's fill when the trailing block is wide
        yield f"crossed {n_a} x 700 levels", CROSSED[0], _crossed(n_a, 8 * n_a, n_a, n_b=700), "auto"
    # the crossproducts' parallel passes (their kernels have no size variants: one fit will do)
    yield f"crossed {_MANY} levels", CROSSED[0], _crossed(_MANY, _ROWS_EACH * _MANY, seed=1), "blocked"


def _exercise(result) -> None:
    """What a user does after a fit, through the kernels: conditional variances and (on the smaller
    models: the same kernels) a bootstrap refit."""
    result.random_effects_sd
    if result.nobs < 50_000:
        result.bootstrap(n=1, seed=0, n_jobs=1, progress=False)


def _statsmodels_door() -> int:
    try:
        from .mixedlm import MixedLM
    except ImportError:
        return 0
    warnings.simplefilter("ignore")  # statsmodels' own warnings of these small models
    data = _crossed(60, 240, seed=1).assign(one=1)
    vc = {f: f"0 + C({f})" for f in ("a", "b")}
    MixedLM.from_formula("y ~ x", data, groups="one", re_formula="0", vc_formula=vc).fit()
    nested = _nested(40, 6, seed=2)
    MixedLM.from_formula("y ~ x1", nested, groups="g", re_formula="1 + x1").fit()
    return 2


def dispatchers() -> list:
    """Every Numba kernel of the package, the serial twins and fixed-size variants made so far included."""
    from numba.core.registry import CPUDispatcher

    from . import kernels
    from .kernels import blocked, common, crossprod, dense, sparse

    out = [obj for mod in (common, dense, blocked, sparse, crossprod) for obj in vars(mod).values()
           if isinstance(obj, CPUDispatcher)]
    return out + list(kernels.common._VARIANTS.values())


def cache_counts() -> tuple[int, list[str]]:
    """(signatures loaded from the cache, the kernels compiled) in this process so far."""
    hits, compiled = 0, []
    for d in dispatchers():
        stats = d.stats
        hits += sum(stats.cache_hits.values())
        compiled += [f"{d.py_func.__qualname__}{tuple(sig)}" for sig, k in stats.cache_misses.items() if k]
    return hits, compiled


def serial_signatures() -> list[dict]:
    """Every serial kernel signature compiled or loaded in this process: what the AOT modules hold."""
    import base64
    import pickle

    from . import kernels
    from .kernels import common

    owners = {id(d): (d, None) for d in dispatchers()}
    owners.update({id(d): (k, (par, size)) for (k, par, size), d in common._VARIANTS.items()})
    out = []
    for d in dispatchers():
        base, variant = owners[id(d)]
        name = base.py_func.__name__
        if d.targetoptions.get("parallel") or name not in kernels._WHERE:
            continue
        key = kernels.Kernel(name, variant).key
        for args, cres in d.overloads.items():
            out.append({"key": key, "name": name, "variant": variant, "spec": [kernels._spec(t) for t in args],
                        "returns": str(cres.signature.return_type),
                        "signature": base64.b64encode(pickle.dumps(cres.signature)).decode()})
    return out


def _build_aot(entries: list[dict], module: str) -> None:
    """Compile ``entries`` (:func:`serial_signatures`) ahead of time into the extension ``module``."""
    import base64
    import importlib
    import pickle

    from numba.pycc import CC

    from . import kernels
    from .kernels import common

    cc = CC(module)
    cc.output_dir = str(kernels.HERE)
    for i, e in enumerate(entries):
        fn = getattr(importlib.import_module(f"sparselmm.kernels.{kernels._WHERE[e['name']]}"), e["name"])
        if e["variant"] is not None:
            fn = common.variant(fn, *e["variant"])
        cc.export(f"{e['key']}__{i}", pickle.loads(base64.b64decode(e["signature"])))(fn.py_func)
    cc.compile()


def _run(part: int, parts: int, quiet: bool) -> tuple[int, int, list[str], list[dict]]:
    """Fit every ``parts``-th workload from ``part`` on: (fits, cache hits, kernels compiled, serial
    signatures)."""
    import numba  # noqa: F401 (started: the parallel kernels' thresholds apply, not the cold start's)

    from . import fit

    nfits = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, formula, data, backend in list(workloads())[part::parts]:
            t0 = time.perf_counter()
            result = fit(formula, data, backend=backend, progress=False)
            _exercise(result)
            nfits += 1
            if backend == "blocked" and len(data) > _MANY:  # the parallel Schur pass (chosen from 1e7 pairs)
                from .backends import BlockedBackend

                model = result.model
                model.backend = BlockedBackend(model.layout, model.crossprod, model.reml, parallel=True)
                _exercise(model.fit(progress=False))
            if not quiet:
                print(f"  {label:22s} {backend:8s} {formula:40s} {time.perf_counter() - t0:6.2f} s", flush=True)
        if part == parts - 1:
            nfits += _statsmodels_door()
    hits, compiled = cache_counts()
    return nfits, hits, compiled, serial_signatures()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparselmm.compile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 4),
                        help="processes compiling at once (default: the cores, at most 4)")
    parser.add_argument("--quiet", action="store_true", help="one line of summary only")
    parser.add_argument("--no-aot", action="store_true", help="the JIT cache only, no ahead-of-time modules")
    parser.add_argument("--record", action="store_true",
                        help="find the serial signatures anew (every kernel through Numba) and record them in "
                             "kernels/signatures.json, which the AOT build reads")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # "i/n": one worker's share, JSON out
    parser.add_argument("--aot-part", help=argparse.SUPPRESS)  # "FILE i": build the AOT module _aot_i
    args = parser.parse_args(argv)
    if args.part:
        part, parts = map(int, args.part.split("/"))
        print(json.dumps(_run(part, parts, args.quiet)))
        return 0
    if args.aot_part:
        path, i = args.aot_part.split()
        _build_aot(json.loads(Path(path).read_text()), f"_aot_{i}")
        return 0
    start = time.perf_counter()
    # bytecode too: where PYTHONDONTWRITEBYTECODE is set, imports would compile the sources each time
    compileall.compile_dir(os.path.dirname(os.path.abspath(__file__)), quiet=1)
    jobs = max(1, args.jobs)

    def battery(aot: bool) -> list | None:
        env = dict(os.environ) if aot else dict(os.environ, SPARSELMM_NO_AOT="1")
        return _workers([[sys.executable, "-m", "sparselmm.compile", "--part", f"{i}/{jobs}"]
                         + (["--quiet"] if args.quiet else []) for i in range(jobs)], env)

    notes = []
    recorded = None if args.no_aot or args.record else _recorded()
    if recorded is not None:
        # the serial kernels ahead of time first: the battery then compiles only the parallel ones
        notes.append(_aot(recorded, jobs))
        results = battery(aot=True)
        missing = _merge(results)
        if missing:
            notes.append(f"{len(missing)} serial signatures not in kernels/signatures.json (compiled by Numba; "
                         f"`python -m sparselmm.compile --record` adds them)")
    else:  # every kernel through Numba: the JIT cache, and the serial signatures the AOT modules take
        results = battery(aot=False)
        if not args.no_aot:
            entries = _merge(results)
            if args.record:
                import numba

                SIGNATURES.write_text(json.dumps({"numba": numba.__version__, "entries": entries}, indent=0) + "\n")
                notes.append(f"{len(entries)} serial signatures recorded in kernels/signatures.json")
            notes.append(_aot(entries, jobs))
    if results is None:
        return 1
    nfits = sum(r[0] for r in results)
    hits = sum(r[1] for r in results)
    compiled = {c for r in results for c in r[2]}
    print("; ".join([f"sparselmm.compile: {nfits} fits in {jobs} processes, {len(compiled)} kernel signatures "
                     f"compiled by Numba, {hits} loaded from its cache", *notes,
                     f"{time.perf_counter() - start:.1f} s"]))
    return 0


def _recorded() -> list[dict] | None:
    """The serial signatures in ``kernels/signatures.json``, if they were recorded with this Numba."""
    import numba

    try:
        data = json.loads(SIGNATURES.read_text())
    except (OSError, ValueError):
        return None
    return data["entries"] if data.get("numba") == numba.__version__ else None


def _merge(results: list | None) -> list[dict]:
    """The workers' serial signatures, each once, in a stable order."""
    unique = {}
    for r in results or []:
        for e in r[3]:
            unique.setdefault((e["key"], json.dumps(e["spec"])), e)
    return sorted(unique.values(), key=lambda e: (e["key"], json.dumps(e["spec"])))


def _workers(commands: list[list[str]], env: dict) -> list | None:
    """Run the commands at once; their last stdout lines as JSON, None for one that printed nothing
    (None in all if one failed). Lines that start with two spaces are progress, passed through."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True, env=env) for c in commands]
    out = []
    for proc in procs:
        lines = []
        for line in proc.stdout:
            if line.startswith("  "):
                print(line, end="", flush=True)
            else:
                lines.append(line)
        if proc.wait() != 0:
            print("sparselmm.compile: a worker failed", file=sys.stderr)
            return None
        out.append(json.loads(lines[-1]) if lines else None)
    return out


def _aot(entries: list[dict], jobs: int) -> str:
    """Build the AOT modules of the serial signatures in ``jobs`` processes, then the index the
    kernels read (``kernels/_aot.json``); nothing when they are up to date. Says what it did."""
    import tempfile

    from . import kernels

    start = time.perf_counter()
    digest = _digest(entries)
    try:
        built = json.loads(kernels.AOT_INDEX.read_text())
        modules = {m for entries_ in built["kernels"].values() for _, m, _ in entries_}
        if built.get("digest") == digest and all(list(kernels.HERE.glob(f"{m}.*.so")) for m in modules):
            return f"the ahead-of-time modules of {len(entries)} serial signatures are up to date"
    except (OSError, ValueError, KeyError):
        pass
    for old in kernels.HERE.glob("_aot*"):
        old.unlink()
    parts = [entries[i::jobs] for i in range(jobs)]
    with tempfile.TemporaryDirectory() as tmp:
        commands = []
        for i, part in enumerate(parts):
            path = Path(tmp) / f"part{i}.json"
            path.write_text(json.dumps(part))
            commands.append([sys.executable, "-m", "sparselmm.compile", "--aot-part", f"{path} {i}"])
        if _workers(commands, dict(os.environ)) is None:
            return "the ahead-of-time build FAILED: Numba compiles the serial kernels"
    index: dict = {}
    for i, part in enumerate(parts):
        for j, e in enumerate(part):
            index.setdefault(e["key"], []).append([e["spec"], f"_aot_{i}", f"{e['key']}__{j}"])
    kernels.AOT_INDEX.write_text(json.dumps({"python": sys.version.split()[0], "digest": digest, "kernels": index}))
    return f"{len(entries)} serial signatures compiled ahead of time ({time.perf_counter() - start:.1f} s)"


def _digest(entries: list[dict]) -> str:
    """What the AOT modules are built from: the signatures, the kernels' sources, Python and Numba."""
    import hashlib

    import numba

    from . import kernels

    # the signatures as the kernels see them (their pickles differ from process to process)
    h = hashlib.sha256(json.dumps([(e["key"], e["spec"], e["returns"]) for e in entries]).encode())
    for source in sorted(kernels.HERE.glob("*.py")):
        h.update(source.read_bytes())
    h.update(f"{sys.version} {numba.__version__}".encode())
    return h.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
