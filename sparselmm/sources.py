"""Data that is not one pandas DataFrame: files read in pieces, iterables of frames, Dask frames.

A :class:`Source` yields its rows as ``(name, DataFrame)`` pieces, only the columns asked for, as
many times as it is iterated (the model reads its data twice: ``stream``). ``name`` says where a
piece comes from (``"ratings-3.parquet"``, ``"piece 7"``), for error messages.

* A path, a glob pattern or a list of them: Parquet files (``.parquet``, ``.pq``; read by
  pyarrow in record batches of ``batch_rows``) or CSV files (pandas in chunks), one kind at a time.
* A list or tuple of DataFrames, or a function returning a new iterable of them on each call
  (a one-shot iterator cannot be read twice: it is refused).
* A ``dask.dataframe.DataFrame``: its partitions, reduced where they are (``stream``) on the
  active scheduler.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

import pandas as pd

from .errors import DataError

#: Rows per record batch read from a Parquet file.
BATCH_ROWS = 1_000_000
PARQUET, CSV = (".parquet", ".pq"), (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".txt")


def is_dask(data) -> bool:
    """Whether ``data`` is a Dask DataFrame (without importing Dask)."""
    dd = sys.modules.get("dask.dataframe")
    return dd is not None and isinstance(data, dd.DataFrame)


class Source:
    """Pieces of rows from somewhere (see the module's notes). ``columns``: those to read."""

    kind = "pieces"

    def __init__(self, columns: list[str]):
        self.columns = list(columns)

    def pieces(self):
        raise NotImplementedError

    def total_rows(self) -> int | None:
        """The rows of the source if known without reading them (for a progress bar)."""
        return None

    def _require(self, names, where: str) -> None:
        """Every column to read is among ``names`` (the columns of ``where``), else a DataError naming both."""
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise DataError(f"column {missing[0]!r} used in the formula is not in {where}", column=missing[0])

    def _select(self, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        self._require(frame.columns, name)
        return frame[self.columns]


class FileSource(Source):
    """Parquet or CSV files, read piece by piece (only the used columns)."""

    kind = "files"

    def __init__(self, paths: list[Path], columns: list[str], batch_rows: int | None = None):
        super().__init__(columns)
        self.paths, self.batch_rows = paths, batch_rows or BATCH_ROWS
        kinds = {_kind(p) for p in paths}
        if len(kinds) != 1:
            raise DataError("the files must be all Parquet or all CSV, not a mix: "
                            + ", ".join(p.name for p in paths[:5]))
        self.format = kinds.pop()

    def total_rows(self) -> int | None:
        if self.format != "parquet":
            return None
        import pyarrow.parquet as pq

        try:
            return sum(pq.ParquetFile(p).metadata.num_rows for p in self.paths)
        except Exception:  # an unreadable file: its piece says so
            return None

    def pieces(self):
        for path in self.paths:
            if self.format == "parquet":
                yield from self._parquet(path)
            else:
                yield from self._csv(path)

    def _parquet(self, path: Path):
        import pyarrow.parquet as pq

        try:
            file = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow's errors for truncated or foreign files
            raise DataError(f"cannot read {path.name} as Parquet: {exc}") from exc
        self._require(file.schema_arrow.names, path.name)
        if file.metadata.num_rows == 0:
            raise DataError(f"{path.name} has no rows")
        for batch in file.iter_batches(batch_size=self.batch_rows, columns=self.columns):
            yield path.name, batch.to_pandas()[self.columns]

    def _csv(self, path: Path):
        try:
            header = pd.read_csv(path, nrows=0).columns
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
            raise DataError(f"cannot read {path.name} as CSV: {exc}") from exc
        self._require(header, path.name)
        empty = True
        for chunk in pd.read_csv(path, usecols=self.columns, chunksize=self.batch_rows):
            empty = False
            yield path.name, chunk[self.columns]
        if empty:
            raise DataError(f"{path.name} has no rows")


class FrameSource(Source):
    """DataFrames from a list, or from a function that returns a new iterable on each call."""

    def __init__(self, frames, columns: list[str]):
        super().__init__(columns)
        self.frames = frames

    def total_rows(self) -> int | None:
        return None if callable(self.frames) else sum(len(f) for f in self.frames if isinstance(f, pd.DataFrame))

    def pieces(self):
        frames = self.frames() if callable(self.frames) else self.frames
        for i, frame in enumerate(frames):
            if not isinstance(frame, pd.DataFrame):
                raise DataError(f"piece {i} of the data is a {type(frame).__name__}, not a pandas DataFrame")
            yield f"piece {i}", self._select(f"piece {i}", frame)


class DaskSource(Source):
    """A Dask DataFrame: its partitions, as delayed pieces (``stream`` reduces each where it is)."""

    kind = "dask"

    def __init__(self, frame, columns: list[str]):
        super().__init__(columns)
        self._require(frame.columns, "the Dask DataFrame")
        self.frame = frame[self.columns]

    def delayed(self) -> list:
        return self.frame.to_delayed()

    def pieces(self):  # on the client, one partition at a time (used only where no reduction applies)
        for i, part in enumerate(self.delayed()):
            yield f"partition {i}", part.compute()


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(PARQUET):
        return "parquet"
    if name.endswith(CSV):
        return "csv"
    raise DataError(f"{path.name}: a data file must be Parquet ({', '.join(PARQUET)}) or CSV ({', '.join(CSV)})")


def _paths(data) -> list[Path]:
    items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    out: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if glob.has_magic(text):
            found = sorted(glob.glob(text))
            if not found:
                raise DataError(f"no file matches {text!r}")
            out += [Path(f) for f in found]
        elif not Path(text).is_file():
            raise DataError(f"no such data file: {text!r}")
        else:
            out.append(Path(text))
    if not out:
        raise DataError("the list of data files is empty")
    return out


def open_source(data, columns: list[str], batch_rows: int | None = None) -> Source:
    """The :class:`Source` of ``data`` (anything but a pandas DataFrame), reading ``columns``."""
    if is_dask(data):
        return DaskSource(data, columns)
    if isinstance(data, (str, os.PathLike)):
        return FileSource(_paths(data), columns, batch_rows)
    if callable(data):
        return FrameSource(data, columns)
    if isinstance(data, (list, tuple)):
        if data and all(isinstance(d, (str, os.PathLike)) for d in data):
            return FileSource(_paths(data), columns, batch_rows)
        if not data:
            raise DataError("the list of data pieces is empty")
        return FrameSource(data, columns)
    if hasattr(data, "__iter__") and iter(data) is data:
        raise DataError("an iterator can be read only once, and the model reads its data twice: pass a list "
                        "of DataFrames, or a function that returns a new iterator on each call")
    raise DataError(f"data must be a pandas DataFrame, a Dask DataFrame, Parquet or CSV file paths, or a list "
                    f"of DataFrames, not {type(data).__name__}")
