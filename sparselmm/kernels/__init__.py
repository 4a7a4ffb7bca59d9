"""Numba kernels: arrays in, arrays out, no model objects.

Thin wrappers in the backends check shapes and dtypes; these functions
assume them. One module per path: ``crossprod`` (Z'Z and Z'[X y] from the
rows), ``sparse`` (θ → Λ'Z'ZΛ, the symbolic factor, the Takahashi selected
inverse), ``dense`` (per-group factors and gradients), ``blocked`` (the
Schur pass and per-level blocks); ``common`` holds look-ups, a counting sort
and the serial twins of parallel kernels.

This package's namespace imports none of them: ``kernels.dense_factor`` is a
:class:`Kernel`, a handle that on call runs the ahead-of-time compiled
serial kernel (``_aot``, built by ``python -m sparselmm.compile``) whose
signature matches the arguments, or else the Numba dispatcher (imported,
with Numba, on that first call). A fit whose kernels are all serial, as a
model of moderate size, never imports Numba: its start-up costs no JIT
machinery (0.3 s: Numba's import and its first dispatch).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np

#: Below this many independent pieces of work (groups, leading columns) a
#: parallel kernel runs its serial twin: waking a thread pool costs more
#: than small problems take (16 ms against 45 µs, seen on a loaded machine),
#: and the serial twins are compiled ahead of time (no Numba at start-up).
#: Nested fits, 2 cores: 1,000 groups 7.4 ms serial, 12.8 ms parallel;
#: 10,000 groups 34.9 ms serial, 31.3 ms parallel.
PARALLEL_MIN_WORK = 5000

#: While Numba is not imported, a parallel kernel also needs this much work: starting Numba (its
#: import and the parallel kernels from its cache) costs a fresh process about 0.45 s, and the
#: parallel kernels of a nested fit save about 1.4 µs a group on two cores (10⁵ groups, 10⁶ rows:
#: 0.73 s for the first fit in parallel against 0.28 s serial, then 0.17 s against 0.30 s), so the
#: start pays from some 3·10⁵ groups. A process that has started Numba takes PARALLEL_MIN_WORK.
COLD_MIN_WORK = 300_000

#: Sizes up to this get their own compiled variant (each costs a compilation, once: cached).
MAX_FIXED_SIZE = 4

#: The module of each kernel.
_WHERE = {
    **dict.fromkeys(["counting_order"], "common"),
    **dict.fromkeys(["block_fill", "block_rows", "one_term", "rows_by_block", "ztv"], "crossprod"),
    **dict.fromkeys(["dense_back_solve", "dense_blocks", "dense_factor", "dense_gradient", "dense_inverse",
                     "dense_lambda_index", "dense_level_sums"], "dense"),
    **dict.fromkeys(["blocked_backward", "blocked_forward", "blocked_gather", "blocked_inverse", "blocked_leading",
                     "blocked_pattern_ok", "blocked_rows", "blocked_schur", "lower_inner",
                     "schur_column_counts", "schur_lower_pattern"], "blocked"),
    **dict.fromkeys(["_lambda_map_pass", "column_counts", "dense_trailing_block", "etree", "lambda_map_apply",
                     "scatter_to_pattern", "selected_gather", "symbolic_pattern", "takahashi"], "sparse"),
}

__all__ = ["COLD_MIN_WORK", "MAX_FIXED_SIZE", "PARALLEL_MIN_WORK", "Kernel", "lambda_map", "num_threads",
           "parallel_pays", "pick", "serial",
           *sorted(k for k in _WHERE if not k.startswith("_"))]

HERE = Path(__file__).resolve().parent
AOT_INDEX = HERE / "_aot.json"


def variant_name(name: str, parallel: bool, size: int) -> str:
    """The name of a kernel's variant (``common.variant``), its key in the AOT index too."""
    return name + ("" if parallel else "_serial") + (f"_q{size}" if size else "")


class Kernel:
    """A kernel by name: as written (``variant`` None), or a (parallel, size) variant (:func:`pick`)."""

    __slots__ = ("name", "variant", "_jit", "_aot")

    def __init__(self, name: str, variant: tuple[bool, int] | None = None):
        self.name, self.variant = name, variant
        self._jit = None
        self._aot = _aot_table().get(self.key, {})

    @property
    def key(self) -> str:
        """The compiled function's name: ``dense_factor``, ``dense_factor_serial_q2``, ..."""
        return self.name if self.variant is None else variant_name(self.name, *self.variant)

    def jit(self):
        """The Numba dispatcher (imports Numba)."""
        if self._jit is None:
            module = importlib.import_module(f"{__name__}.{_WHERE[self.name]}")
            fn = getattr(module, self.name)
            if self.variant is not None:
                from .common import variant

                fn = variant(fn, *self.variant)
            self._jit = fn
        return self._jit

    def __call__(self, *args):
        fn = self._aot.get(_signature(args)) if self._aot else None
        return (fn or self.jit())(*args)

    def __repr__(self) -> str:
        return f"<kernel {self.key}>"


_HANDLES: dict[tuple, Kernel] = {}


def _handle(name: str, variant=None) -> Kernel:
    key = (name, variant)
    if key not in _HANDLES:
        _HANDLES[key] = Kernel(name, variant)
    return _HANDLES[key]


def __getattr__(name: str):
    if name in _WHERE:
        return _handle(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Kernels whose parallel form has no fixed-size variants: the per-group triangular solve, the
#: inverse and the level sums (the EM step's, once a fit), a small share of a fit against the
#: factorizations and gradients, where the unrolled loops pay; each variant would cost some
#: seconds of ``python -m sparselmm.compile``.
_GENERIC_WHEN_PARALLEL = {"dense_back_solve", "dense_inverse", "dense_level_sums"}


def parallel_pays(work: float, threshold: float, cold: float) -> bool:
    """Whether ``work`` is enough for a parallel kernel: ``threshold`` once Numba is imported, else
    ``cold`` (the work from which starting Numba pays)."""
    return work >= (threshold if "numba" in sys.modules else max(threshold, cold))


def pick(kernel: Kernel, work: int, size: int = 0) -> Kernel:
    """``kernel`` for enough work (:func:`parallel_pays`: PARALLEL_MIN_WORK pieces, COLD_MIN_WORK before
    Numba is started), else its serial twin; with 0 < ``size`` ≤ MAX_FIXED_SIZE the variant compiled for
    ``QFIX = size`` (``common.QFIX``)."""
    parallel = parallel_pays(work, PARALLEL_MIN_WORK, COLD_MIN_WORK)
    size = size if size <= MAX_FIXED_SIZE and not (parallel and kernel.name in _GENERIC_WHEN_PARALLEL) else 0
    if parallel and not size:
        return kernel
    return _handle(kernel.name, (parallel, size))


def serial(kernel: Kernel) -> Kernel:
    """The serial twin of a parallel kernel."""
    return pick(kernel, 0)


def lambda_map(indptr, indices, term, comp, p, tindex, toff):
    """Map from θ and the full Z'Z to the lower triangle of Λ'Z'ZΛ.

    For each stored entry (r, c), r ≥ c, of the lower triangle,

        (Λ'Z'ZΛ)[r, c] = Σ_m θ[t1[m]] θ[t2[m]] ZtZ.data[src[m]],  m ∈ ptr[e]:ptr[e+1]

    since Λ[r', r] = T_k[a', a] for r' = r − a + a' in the same level block.

    Returns
    -------
    lptr, lidx : ndarray
        CSC pattern (indptr, indices) of the lower triangle.
    ptr, src, t1, t2 : ndarray
        The map: int32 (a third of a large model's index memory), int64 for ptr and src beyond 2³¹ entries.
    """
    z32 = np.zeros(0, dtype=np.int32)  # typed as in the second pass: one signature
    ne, nm = _handle("_lambda_map_pass")(indptr, indices, term, comp, p, tindex, toff, False, z32, z32, z32, z32,
                                         z32, z32)
    wide = np.int32 if nm < np.iinfo(np.int32).max else np.int64
    ptr = np.empty(ne + 1, dtype=wide)
    lptr = np.empty(len(indptr), dtype=np.int32)
    lidx = np.empty(ne, dtype=np.int32)
    src = np.empty(nm, dtype=wide)
    t1 = np.empty(nm, dtype=np.int32)
    t2 = np.empty(nm, dtype=np.int32)
    _handle("_lambda_map_pass")(indptr, indices, term, comp, p, tindex, toff, True, ptr, lptr, lidx, src, t1, t2)
    return lptr, lidx, ptr, src, t1, t2


def num_threads() -> int:
    """Numba's thread count, without importing Numba before a kernel needs it (its default then)."""
    numba = sys.modules.get("numba")
    if numba is not None and hasattr(numba, "get_num_threads"):
        return numba.get_num_threads()
    env = os.environ.get("NUMBA_NUM_THREADS")
    return int(env) if env else max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                    else os.cpu_count() or 1)


# --- the ahead-of-time compiled serial kernels ----------------------------------------------------
def _signature(args) -> tuple:
    """The arguments' types as Numba would see them: arrays by dtype, dimensions, layout ('C' when
    C-contiguous, else 'F' when Fortran-contiguous, else 'A'), read-only and aligned flags."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            flags = a.flags
            layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"
            out.append((a.dtype.str, a.ndim, layout, not flags.writeable, bool(flags.aligned)))
        elif isinstance(a, (bool, np.bool_)):
            out.append("bool")
        elif isinstance(a, int):
            out.append("int64")
        elif isinstance(a, float):
            out.append("float64")
        elif isinstance(a, np.generic):
            out.append(a.dtype.name)  # numpy scalars: "int32", "float64", ...
        else:
            out.append(None)  # not a kernel argument the AOT modules take: the JIT decides
    return tuple(out)


def _spec(t) -> object:
    """:func:`_signature`'s entry for a Numba type (used when the AOT module is built)."""
    from numba.core import types

    if isinstance(t, types.Array):
        return (np.dtype(str(t.dtype)).str, t.ndim, t.layout, not t.mutable, bool(t.aligned))
    if isinstance(t, types.Boolean):
        return "bool"
    return str(t)


_AOT: dict | None = None


def _aot_table() -> dict:
    """{kernel key: {argument signature: the compiled function}}; empty without a built module."""
    global _AOT
    if _AOT is None:
        _AOT = {}
        if os.environ.get("SPARSELMM_NO_AOT"):
            return _AOT
        try:
            index = json.loads(AOT_INDEX.read_text())
            if index.get("python") != sys.version.split()[0]:
                return _AOT
            table = {}
            for key, entries in index["kernels"].items():
                table[key] = {_freeze(spec): getattr(importlib.import_module(f"{__name__}.{module}"), export)
                              for spec, module, export in entries}
        except (OSError, ValueError, KeyError, ImportError, AttributeError):
            return _AOT  # no usable build: the JIT serves
        _AOT.update(table)
    return _AOT


def _freeze(spec) -> tuple:
    """A JSON spec back to :func:`_signature`'s tuple."""
    return tuple(tuple(s) if isinstance(s, list) else s for s in spec)
