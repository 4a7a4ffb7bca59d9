"""A model from data read in pieces: two passes over the rows, then the usual solver.

The likelihood needs the rows only through the crossproducts of [Z X y], sums over rows
(``crossprod``). So a source larger than memory (``sources``) is read twice, one piece at a
time:

1. :func:`scan_piece`, summed: per used column its kind (numeric, or levels), missing values, and the levels of
   every grouping factor and categorical column, their union over the pieces in the order the
   in-memory path gives them (sorted; a categorical's own order when every piece has the same
   categories); the combinations met by interaction factors ``a:b``. Bad input is found here,
   with the piece named, before any crossproduct.
2. :func:`piece_crossprod`, summed: each piece encoded against those levels (formulaic's specs from the first
   piece, with every category), its crossproducts computed by the existing kernels, and summed.
   y enters as y − ȳ (its mean from pass 1) for every piece alike.

:func:`stream_frame` runs both. Then the checks that need every row (levels against rows, aliased fixed-effect columns from
X'X, a response fitted exactly) run on the sums. A Dask DataFrame's partitions are scanned and
reduced where they are, as ``dask.delayed`` tasks summed in a tree on the active scheduler
(threads by default, a ``distributed`` cluster when a client is running): only scans and
crossproducts travel.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import numpy as np
import pandas as pd

from .crossprod import Crossprod, crossproducts
from .design import Layout, ReTerm
from .errors import DataError, FormulaError, MissingDataWarning, RankDeficiencyWarning
from .formula import ParsedFormula, parse_formula
from .frame import (RANK_TOL, ModelFrame, _ColumnSubset, _among_fixed, _check_finite, _check_levels,
                    _check_response_column, _matrix, _response, _variables, interaction, r_name)
from .sources import Source
from .weights import RowInput, add, check_weights, offset_values, row_input


# --- pass 1: kinds, missing values, levels ----------------------------------------------------
@dataclass
class Scan:
    """What pass 1 found (one piece's, or several summed with ``+``)."""

    rows: int = 0  # all rows read
    complete: int = 0  # rows without a missing value in a used column
    ysum: float = 0.0  # Σ y over complete rows (the response column, when numeric)
    kinds: dict = field(default_factory=dict)  # column -> (kind, piece): "numeric" or "levels"
    missing: dict = field(default_factory=dict)  # column -> count
    values: dict = field(default_factory=dict)  # column -> set of values
    categories: dict = field(default_factory=dict)  # column -> a categorical's categories, or None
    combos: dict = field(default_factory=dict)  # factors -> DataFrame of the combinations met
    sums: dict = field(default_factory=dict)  # numeric column -> Σ over complete rows (marginal means' grid)

    def __add__(self, other: Scan) -> Scan:
        out = Scan(self.rows + other.rows, self.complete + other.complete, self.ysum + other.ysum)
        out.sums = {c: self.sums.get(c, 0.0) + other.sums.get(c, 0.0) for c in {**self.sums, **other.sums}}
        out.kinds = dict(self.kinds)
        for col, (kind, where) in other.kinds.items():
            if col in out.kinds and out.kinds[col][0] != kind:
                first, at = out.kinds[col]
                raise DataError(f"column {col!r} is {first} in {at} but {kind} in {where}", column=col)
            out.kinds.setdefault(col, (kind, where))
        out.missing = {c: self.missing.get(c, 0) + other.missing.get(c, 0)
                       for c in {**self.missing, **other.missing}}
        out.values = {c: self.values.get(c, set()) | other.values.get(c, set())
                      for c in {**self.values, **other.values}}
        out.categories = {c: self.categories[c] if self.categories.get(c, False) == other.categories.get(c, False)
                          else None for c in {**self.categories, **other.categories}}
        out.combos = {f: pd.concat([d for d in (self.combos.get(f), other.combos.get(f)) if d is not None],
                                   ignore_index=True).drop_duplicates(ignore_index=True)
                      for f in {**self.combos, **other.combos}}
        return out


def _kind(column: pd.Series) -> str:
    dtype = column.dtype
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype) \
        and not isinstance(dtype, pd.CategoricalDtype)
    return "numeric" if numeric else "levels"


@dataclass(frozen=True)
class Plan:
    """What each pass needs of the formula."""

    parsed: ParsedFormula
    used: list[str]  # the columns whose missing values drop a row (the offset column among them)
    factors: list[tuple[str, ...]]  # the grouping factors of the random terms
    missing: str
    weights: str | None = None  # the prior weights' column
    offset: str | None = None  # the offset's column (besides the formula's offset() terms)


def _complete(name: str, frame: pd.DataFrame, used: list[str], missing: str) -> tuple[pd.DataFrame, dict]:
    na = {c: int(frame[c].isna().sum()) for c in used}
    if not any(na.values()):
        return frame, na
    if missing == "raise":
        col = next(c for c, k in na.items() if k)
        raise DataError(f"missing values in column {col!r} ({na[col]} in {name}); use missing='drop' to drop "
                        "those rows", column=col)
    return frame.loc[~frame[used].isna().any(axis=1).to_numpy()], na


def scan_piece(name: str, frame: pd.DataFrame, plan: Plan) -> Scan:
    """Pass 1 over one piece."""
    out = Scan(rows=len(frame))
    frame = _check_response_column(plan.parsed.response, frame)
    frame, out.missing = _complete(name, frame, plan.used, plan.missing)
    out.complete = len(frame)
    if plan.weights is not None:
        check_weights(RowInput("weights", plan.weights).read(frame), plan.weights, frame.index, f" in {name}")
    grouping = {c for f in plan.factors for c in f}
    for col in plan.used:
        kind = _kind(frame[col])
        out.kinds[col] = (kind, name)
        if kind == "numeric":
            out.sums[col] = float(frame[col].to_numpy(dtype=float).sum())
        if kind == "levels" or col in grouping:
            out.values[col] = set(frame[col].unique().tolist())
            dtype = frame[col].dtype
            out.categories[col] = tuple(dtype.categories) if isinstance(dtype, pd.CategoricalDtype) else None
    if plan.parsed.response in frame.columns:
        out.ysum = float(frame[plan.parsed.response].to_numpy(dtype=float).sum())
    for f in plan.factors:
        if len(f) > 1:
            out.combos[f] = frame[list(f)].drop_duplicates(ignore_index=True)
    return out


def _levels(scan: Scan, col: str) -> pd.Index:
    """The levels of ``col`` over all rows, in the in-memory path's order (``frame._codes``)."""
    values = scan.values[col]
    cats = scan.categories.get(col)
    if cats is not None:
        return pd.Index([c for c in cats if c in values])
    return pd.Index(pd.factorize(pd.Series(list(values)), sort=True)[1])


@dataclass(frozen=True)
class Grouping:
    """Global codes of a grouping factor (or an interaction ``a:b``: step by step, as
    ``frame.interaction``)."""

    factors: tuple[str, ...]
    levels: list[pd.Index]  # of each factor
    used: list[np.ndarray]  # of each interaction step: the combined codes met, sorted
    labels: pd.Index

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        codes = _codes_of(frame[self.factors[0]], self.levels[0])
        for name, lv, used in zip(self.factors[1:], self.levels[1:], self.used):
            codes = np.searchsorted(used, codes * len(lv) + _codes_of(frame[name], lv))
        return codes.astype(np.int64)


def _codes_of(column: pd.Series, levels: pd.Index) -> np.ndarray:
    """Codes of ``column``'s values among ``levels``; a value pass 1 did not see is an error (the data
    changed between the passes)."""
    codes = pd.Categorical(column, categories=levels).codes.astype(np.int64)
    if (codes < 0).any():
        value = column.to_numpy()[np.flatnonzero(codes < 0)[0]]
        raise DataError(f"column {column.name!r} has the value {value!r}, which the first pass over the data did "
                        "not see: did the data change between the passes?", column=str(column.name))
    return codes


def _grouping(factors: tuple[str, ...], scan: Scan) -> Grouping:
    levels = [_levels(scan, c) for c in factors]
    if len(factors) == 1:
        return Grouping(factors, levels, [], levels[0])
    combos = scan.combos[factors]
    _, labels, used = interaction([(_codes_of(combos[name], lv), lv) for name, lv in zip(factors, levels)])
    return Grouping(factors, levels, used, labels)


# --- pass 2: crossproducts --------------------------------------------------------------------
@dataclass
class Encoder:
    """Encodes a piece as the model's arrays: levels from pass 1, formulaic's specs from the first piece."""

    plan: Plan
    levels: dict  # column -> pd.Index, for the non-numeric columns
    groupings: list[Grouping]  # of the random terms, in the formula's order
    order: list[int]  # the terms sorted by decreasing levels (lme4's order)
    lhs: object = None
    rhs: object = None
    term_specs: list = None  # per random term: formulaic spec, or the fixed columns it takes
    keep: np.ndarray | None = None  # the fixed-effect columns kept (aliased ones dropped), once known

    def categorize(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The non-numeric columns (of those ``frame`` has: a marginal means' grid has the fixed part's
        alone) as categoricals over pass 1's levels."""
        return frame.assign(**{c: pd.Categorical.from_codes(_codes_of(frame[c], lv), categories=lv)
                               for c, lv in self.levels.items() if c in frame.columns})

    def specify(self, frame: pd.DataFrame) -> None:
        """formulaic's specs from a first piece (already categorized)."""
        parsed = self.plan.parsed
        mm = _matrix(f"{parsed.response} ~ {parsed.fixed}", frame)
        self.lhs, self.rhs = mm.lhs.model_spec, mm.rhs.model_spec
        self.term_specs = []
        for rt in parsed.random:
            cols = _among_fixed(rt, frame, mm.rhs)
            if cols is not None:
                self.term_specs.append((cols, [mm.rhs.model_spec.column_names[j] for j in cols]))
            else:
                spec = _matrix(rt.expr, frame).model_spec
                if len(spec.column_names) == 0:
                    raise FormulaError(f"random term ({rt.expr} | {rt.group}) has no model columns")
                self.term_specs.append((spec, list(spec.column_names)))

    def encode(self, frame: pd.DataFrame):
        """(y, X, terms, weights, offset) of one piece, checked (the errors name rows by the piece's
        index); weights and offset None where the model has none."""
        frame = self.categorize(frame)
        plan = self.plan
        w = None if plan.weights is None else RowInput("weights", plan.weights).read(frame)
        o = add(offset_values(plan.parsed.offsets, frame, frame.index),
                None if plan.offset is None else RowInput("offset", plan.offset).read(frame))
        if o is not None:
            _check_finite(o[:, None], ["offset"], frame.index, "offset")
        lhs = SimpleNamespace(lhs=self.lhs.get_model_matrix(frame, na_action="ignore"))
        y = _response(lhs, self.plan.parsed.response, frame.index)
        X = np.ascontiguousarray(self.rhs.get_model_matrix(frame, na_action="ignore"), dtype=float)
        _check_finite(X, [r_name(c) for c in self.rhs.column_names], frame.index, "fixed-effect")
        terms = []
        for rt, grouping, (spec, cols) in zip(self.plan.parsed.random, self.groupings, self.term_specs):
            Xk = X[:, spec] if isinstance(spec, list) else spec.get_model_matrix(frame, na_action="ignore")
            Xk = np.ascontiguousarray(Xk, dtype=float)
            columns = tuple(r_name(c) for c in cols)
            _check_finite(Xk, columns, frame.index, f"random term ({rt.group}):")
            terms.append(ReTerm(group=rt.group, columns=columns, levels=grouping.labels,
                                codes=grouping.codes(frame), X=Xk))
        return y, X, [terms[k] for k in self.order], w, o


def _terms_template(encoder: Encoder) -> list[ReTerm]:
    """The model's terms without rows (levels, columns, order)."""
    terms = [ReTerm(group=rt.group, columns=tuple(r_name(c) for c in cols), levels=g.labels,
                    codes=np.zeros(0, dtype=np.int64), X=np.zeros((0, len(cols))))
             for rt, g, (_, cols) in zip(encoder.plan.parsed.random, encoder.groupings, encoder.term_specs)]
    return [terms[k] for k in encoder.order]


def piece_crossprod(name: str, frame: pd.DataFrame, encoder: Encoder, shift: np.ndarray) -> Crossprod | None:
    """Pass 2 over one piece: its crossproducts (None if no complete row)."""
    frame = _check_response_column(encoder.plan.parsed.response, frame)
    frame, _ = _complete(name, frame, encoder.plan.used, "drop")
    if len(frame) == 0:
        return None
    try:
        y, X, terms, w, o = encoder.encode(frame)
    except DataError as exc:
        raise DataError(f"{name}: {exc}", column=exc.column) from exc
    return crossproducts(Layout(terms), X, y if o is None else y - o, shift=shift, weights=w)


# --- the two passes -------------------------------------------------------------------------
def _reduce(source: Source, work, combine, bar=None):
    """``combine`` of ``work(name, piece)`` over the pieces (Dask: as tasks where the partitions are,
    summed in a tree); ``bar``: a tqdm bar advanced by each piece's rows."""
    if source.kind == "dask":
        import dask

        parts = [dask.delayed(work)(f"partition {i}", p) for i, p in enumerate(source.delayed())]
        return dask.compute(_tree(parts, dask.delayed(_combine2), combine))[0]
    total, batch = None, []
    for name, piece in source.pieces():
        batch.append(work(name, piece))
        if len(batch) == BATCH:  # a tree over the batch, then one sum with the (larger) total
            total, batch = _combine2(combine, total, _tree(batch, _combine2, combine)), []
        if bar is not None:
            bar.update(len(piece))
    if bar is not None:
        bar.close()
    return _combine2(combine, total, _tree(batch, _combine2, combine)) if batch else total


#: Pieces summed among themselves before their sum joins the running total: crossproducts of
#: pieces are small beside the total, whose pattern each sum with it passes over (10⁸ rows in
#: 100 pieces: 119 s → 96 s for the second pass, peak 1.8 → 2.1 GB; 8 pieces: 94 s, 2.4 GB).
BATCH = 4


def _tree(parts: list, call, combine):
    """``combine`` of ``parts`` pairwise, in order (``call``: ``_combine2`` or its ``dask.delayed``)."""
    while len(parts) > 1:
        parts = [call(combine, *parts[i:i + 2]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


def _bar(what: str, total: int | None, show: bool):
    """A tqdm progress bar in rows on standard error, if ``show`` and tqdm is installed (extra ``[progress]``)."""
    if not show:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=f"sparselmm: {what}", unit=" rows", unit_scale=True, file=sys.stderr, leave=False)


def _combine2(combine, a, b):
    if a is None:
        return b
    return a if b is None else combine(a, b)


def _first_piece(source: Source, plan: Plan):
    """The first piece with a complete row (its specs are the model's)."""
    for name, piece in source.pieces():
        piece = _check_response_column(plan.parsed.response, piece)
        piece, _ = _complete(name, piece, plan.used, "drop")
        if len(piece):
            return name, piece
    raise DataError("no rows are left after dropping rows with missing values")


@dataclass
class Streamed:
    """A model's data read in pieces: the frame (without rows), the crossproducts, and what reads
    and encodes the pieces again (fitted values, residuals); ``seconds`` of each pass."""

    frame: ModelFrame
    crossprod: Crossprod
    source: Source
    encoder: Encoder
    seconds: tuple[float, float]
    means: dict = field(default_factory=dict)  # numeric column -> mean over the complete rows

    @property
    def rows(self) -> int:
        return self.frame.n


def fitted_piece(encoder: Encoder, piece: pd.DataFrame, beta: np.ndarray, b: list[np.ndarray],
                 pearson: bool = False) -> pd.DataFrame:
    """Fitted values offset + X β̂ + Z b̂ and residuals of a piece's complete rows (its index), from
    the encoder alone (what a Dask task ships to a worker); ``pearson``: and √w times the residuals."""
    piece = _check_response_column(encoder.plan.parsed.response, piece)
    piece, _ = _complete("", piece, encoder.plan.used, "drop")
    y, X, terms, w, o = encoder.encode(piece)
    eta = X[:, encoder.keep] @ beta
    for t, bk in zip(terms, b):
        eta += np.einsum("ij,ij->i", t.X, bk[t.codes])
    if o is not None:
        eta += o
    out = pd.DataFrame({"fitted": eta, "resid": y - eta}, index=piece.index)
    if pearson:
        out["pearson"] = out["resid"] if w is None else out["resid"] * np.sqrt(w)
    return out


def stream_frame(formula: str, source_of, missing: str = "drop", verbose: bool = False, weights=None,
                 offset=None) -> Streamed:
    """The model's frame (without rows) and crossproducts from a source read twice.

    ``source_of(columns)``: the :class:`~sparselmm.sources.Source` reading those columns.
    ``verbose``: a progress bar per pass (tqdm, when installed) and a line after it on standard
    error (rows, seconds, rows per second). ``weights``, ``offset``: columns of the source.
    """
    parsed = parse_formula(formula)
    if not parsed.random:
        raise FormulaError(f"formula {formula!r} has no random-effects term such as (1 | group); "
                           "for a model without random effects use ordinary least squares")
    inputs = [row_input(weights, "weights"), row_input(offset, "offset")]
    for i in inputs:
        if i is not None and i.column is None:
            raise DataError(f"{i.what} given as values need the data as one DataFrame: for data read in pieces, "
                            f"name a column ({i.what}='column')", column=i.what)
    w_col, o_col = (None if i is None else i.column for i in inputs)
    used = _variables(parsed)
    used += [o_col] if o_col is not None and o_col not in used else []
    source = source_of(used + ([w_col] if w_col is not None and w_col not in used else []))
    factors = [rt.factors for rt in parsed.random]
    plan = Plan(parsed, used, factors, missing, w_col, o_col)
    start = time.perf_counter()
    scan = _reduce(source, lambda name, piece: scan_piece(name, piece, plan), Scan.__add__,
                   _bar("pass 1", source.total_rows(), verbose and source.kind != "dask"))
    first_pass = time.perf_counter() - start
    if scan is None or scan.rows == 0:
        raise DataError("the data has no rows")
    dropped = {c: k for c, k in scan.missing.items() if k}
    if dropped:
        detail = ", ".join(f"{c!r} ({k})" for c, k in dropped.items())
        warnings.warn(f"dropped {scan.rows - scan.complete} of {scan.rows} rows with missing values in {detail}",
                      MissingDataWarning, stacklevel=3)
    n = scan.complete
    if n < 2:
        raise DataError(f"{n} row(s) left of {scan.rows}: a mixed model needs more than one observation")
    levels = {c: _levels(scan, c) for c, (kind, _) in scan.kinds.items() if kind == "levels"}
    groupings = [_grouping(f, scan) for f in factors]
    order = sorted(range(len(groupings)), key=lambda k: -len(groupings[k].labels))
    encoder = Encoder(plan, levels, groupings, order)
    _, first = _first_piece(source, plan)
    encoder.specify(encoder.categorize(first))
    ybar = scan.ysum / n if parsed.response in scan.kinds else 0.0
    names = [r_name(c) for c in encoder.rhs.column_names]
    shift = np.zeros(len(names))
    if "(Intercept)" in names:
        shift[names.index("(Intercept)")] = ybar
    if verbose:
        _say(f"pass 1 (levels, types, missing values): {scan.rows:,} rows", first_pass)
    start = time.perf_counter()
    cp = _reduce(source, lambda name, piece: piece_crossprod(name, piece, encoder, shift), Crossprod.__add__,
                 _bar("pass 2", scan.rows, verbose and source.kind != "dask"))
    second_pass = time.perf_counter() - start
    if verbose:
        _say(f"pass 2 (crossproducts): {cp.n:,} rows", second_pass)
    terms = _terms_template(encoder)
    _check_levels(terms, n)
    cp, names, fixed_spec, encoder.keep = _drop_aliased(cp, names, encoder.rhs)
    _check_not_fitted_exactly(cp, parsed.response)
    term_specs = [(None if isinstance(encoder.term_specs[k][0], list) else encoder.term_specs[k][0], parsed.random[k])
                  for k in order]  # None: the term's columns are among the fixed effects'
    frame = ModelFrame(formula=parsed, y=np.zeros(0), X=np.zeros((0, len(names))), fe_names=names, terms=terms,
                       fixed_spec=fixed_spec, term_specs=term_specs, row_index=pd.RangeIndex(0), nrows=n,
                       weights_input=inputs[0], offset_input=inputs[1])
    return Streamed(frame, cp, source, encoder, (first_pass, second_pass), {c: v / n for c, v in scan.sums.items()})


def _say(what: str, seconds: float) -> None:
    rows = int(what.rsplit(": ", 1)[1].split()[0].replace(",", ""))
    print(f"sparselmm: {what} in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)", file=sys.stderr,
          flush=True)


def independent_from_gram(G: np.ndarray, tol: float = RANK_TOL) -> np.ndarray:
    """``frame.independent_columns`` from X'X alone: left to right, a column is kept when its part
    orthogonal to the columns kept before it exceeds ``tol`` of its norm (the squared norms from
    the Gram matrix: good to some 1e-8 relative, against the in-memory QR's 1e-16)."""
    keep: list[int] = []
    for j in range(G.shape[0]):
        gjj = G[j, j]
        if gjj <= 0:
            continue
        if keep:
            K = np.array(keep)
            g = G[K, j]
            part = gjj - g @ np.linalg.solve(G[np.ix_(K, K)], g)
        else:
            part = gjj
        if part > tol * tol * gjj:
            keep.append(j)
    return np.array(keep, dtype=np.int64)


def _drop_aliased(cp: Crossprod, names: list[str], spec):
    keep = independent_from_gram(cp.XtX)
    if len(keep) == len(names):
        return cp, names, spec, keep
    dropped = [nm for j, nm in enumerate(names) if j not in set(keep.tolist())]
    k = len(dropped)
    warnings.warn(f"fixed-effect model matrix is rank deficient so dropping {k} "
                  f"{'column / coefficient' if k == 1 else 'columns / coefficients'}: "
                  + ", ".join(map(repr, dropped)), RankDeficiencyWarning, stacklevel=4)
    p = len(names)
    cols = np.append(keep, p)  # and y's column of Z'[X y]
    cp = replace(cp, ZtXy=np.ascontiguousarray(cp.ZtXy[:, cols]), XtX=cp.XtX[np.ix_(keep, keep)], Xty=cp.Xty[keep],
                 beta_shift=cp.beta_shift[keep])  # γ: ȳ at the intercept
    return cp, [names[j] for j in keep], _ColumnSubset(spec, keep), keep


def _check_not_fitted_exactly(cp: Crossprod, response: str) -> None:
    """The least-squares residual of e = y − Xγ on X is more than 1e-12 of ‖y‖ (``frame.fitted_exactly``)."""
    rss = cp.yty - (cp.Xty @ np.linalg.solve(cp.XtX, cp.Xty) if len(cp.Xty) else 0.0)
    total = cp.yty + 2 * cp.beta_shift @ cp.Xty + cp.beta_shift @ cp.XtX @ cp.beta_shift
    if rss <= 1e-24 * total:
        raise DataError(f"the response {response!r} is fitted exactly by the fixed effects (zero residuals): its "
                        "variance cannot be estimated", column=response)
