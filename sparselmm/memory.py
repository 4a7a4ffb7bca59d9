"""The memory guard: refuse a model whose factor would not fit, before factoring it.

Both backends know their size from structure alone (the symbolic factor's
column counts; the group block sizes) and compare it with ``max_memory``:
by default the memory the system says is available.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import ModelSizeError

#: Bytes per entry of the sparse factor L over a fit: CHOLMOD's supernodal
#: values and indices, its simplicial copy for the selected inversion, the
#: exact pattern with its values and the selected inverse on it; and bytes
#: per entry of the dense trailing block's inverse.
SPARSE_BYTES_PER_ENTRY = 56
DENSE_BYTES_PER_ENTRY = 8


def available_memory() -> int | None:
    """Available physical memory in bytes (``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit(max_memory: int | float | None) -> float:
    """The limit in bytes: ``max_memory`` if given, else the available memory (inf if unknown)."""
    if max_memory is not None:
        return float(max_memory)
    avail = available_memory()
    return float(avail) if avail else float("inf")


def gpu_name() -> str | None:
    """The first GPU NVIDIA's driver lists (``/proc/driver/nvidia/gpus``), or None."""
    try:
        for gpu in sorted(Path("/proc/driver/nvidia/gpus").iterdir()):
            for line in (gpu / "information").read_text().splitlines():
                if line.startswith("Model:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def refuse(what: str, nbytes: float, limit: float, advice: str, at_least: bool = False,
           gpu_hint: bool = True) -> None:
    """Raise :class:`ModelSizeError` saying how large (``at_least``: a lower bound, counting stopped
    at the limit), against what, and what to change (``gpu_hint``: and that a GPU is here, if one is)."""
    need = f"more than {nbytes / 2**30:.2f} GiB" if at_least else f"about {nbytes / 2**30:.2f} GiB"
    gpu = gpu_name() if gpu_hint else None
    gpu = (f" This machine has a GPU ({gpu}): device='cuda' puts a crossed design's dense block on it "
           "(CuPy, the [gpu] extra)." if gpu else "")
    raise ModelSizeError(
        f"{what} would need {need}, more than the {limit / 2**30:.2f} GiB allowed. "
        f"{advice} To try anyway, pass a larger max_memory (in bytes).{gpu}",
        nbytes=int(nbytes),
    )


_set_hugepage_advice = getattr(getattr(getattr(np, "_core", None) or np.core, "multiarray", None),  # numpy 2 / 1
                               "_set_madvise_hugepage", None)


@contextmanager
def without_hugepage_advice():
    """numpy's madvise(MADV_HUGEPAGE) on its large arrays off inside the block (restored after).

    With transparent huge pages in the kernel's default ``defrag=madvise``
    mode, every advised allocation may stall in direct page compaction: a
    fit allocates a few hundred MB of fresh arrays, and in a fresh process
    the crossed 10⁶-row fit took 1.63–1.74 s with the advice, 1.40–1.43 s
    without (``NUMPY_MADVISE_HUGEPAGE=0``, three runs each). A numpy without
    the switch is left alone.
    """
    if _set_hugepage_advice is None:
        yield
        return
    before = _set_hugepage_advice(False)
    try:
        yield
    finally:
        _set_hugepage_advice(before)
