"""Estimated marginal means and their contrasts, as R's emmeans gives them for lmer fits.

**The reference grid** (emmeans' ``ref_grid``): every variable of the fixed part — each factor at
its levels, each numeric covariate at its mean over the rows of the fit (``at`` sets values) —
crossed; the fixed-effects model matrix of each grid row x (formulaic's spec of the fit: the
same coding) and its offset (the formula's ``offset()`` terms evaluated on the grid, the
``offset`` argument at its mean), as emmeans does.

**Marginal means**: for each combination of the ``specs`` (and ``by``) factors, the
equal-weight average ℓ of the grid rows that have it; the mean is ℓ'β̂ + offset, its SE
√(ℓ'Vℓ) and its df from the fit's ``ddf`` method for ℓ: Kenward–Roger (emmeans' default for lmer:
V the adjusted covariance, df pbkrtest's ``Lb_ddf``; a maximum-likelihood fit takes the adjustment
of its REML refit, as pbkrtest's ``vcovAdj`` does), Satterthwaite (lmerTest's ``calcSatterth``; V
unadjusted) or asymptotic. Rows that are not estimable in a rank-deficient fit (ℓ outside the row
space of X, emmeans' ``estimability`` test at 1e-8) are NaN.

**Contrasts** of the means within each ``by`` group: ``"pairwise"`` (labels ``"a - b"``, Tukey),
``"revpairwise"`` (``"b - a"``, Tukey), ``"trt.vs.ctrl"`` (each against ``ref``, emmeans'
``dunnettx`` approximation to Dunnett), ``"eff"`` (each against the average, FDR) or a dict of
coefficient vectors (no adjustment); each with its own SE and df. P-values are adjusted per
``by`` family: ``tukey`` (the studentized range, R's ``ptukey``), ``sidak``, ``scheffe``,
``dunnettx``, ``bonferroni``, ``holm``, ``hochberg``, ``BH``/``fdr``, ``BY`` or ``none``, with
emmeans' rules (a family of one contrast is not adjusted; Tukey outside pairwise comparisons
becomes Šidák).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..weights import offset_values
from .distributions import f_ppf, f_sf, ptukey, qtukey, t_ppf, t_two_sided

#: emmeans' estimability tolerance (``estimability::is.estble``).
ESTIMABLE_TOL = 1e-8
_DDF = {"kenward-roger": "kenward-roger", "kr": "kenward-roger", "satterthwaite": "satterthwaite",
        "asymptotic": "asymptotic"}


def _parse_specs(specs, by) -> tuple[list[str], list[str]]:
    """``"a"``, ``["a", "b"]``, ``"~ a * b"``, ``"a | b"`` → (spec variables, by variables)."""
    if isinstance(specs, str):
        text = specs.strip().lstrip("~")
        parts = text.split("|")
        if len(parts) > 2:
            raise ValueError(f"specs {specs!r}: at most one '|'")
        names = [v for v in re.split(r"[*:+\s]+", parts[0]) if v]
        inner_by = [v for v in re.split(r"[*:+\s]+", parts[1]) if v] if len(parts) == 2 else []
    else:
        names, inner_by = list(specs), []
    by = inner_by + ([by] if isinstance(by, str) else list(by or []))
    if not names:
        raise ValueError(f"specs {specs!r} name no variable")
    return names, by


def _variables(frame) -> list[str]:
    """The fixed part's variables (and the offsets'), in the order the formula first names them."""
    from ..frame import formulaic

    parsed = frame.formula
    used = set(formulaic.Formula(parsed.fixed).required_variables)
    for o in parsed.offsets:
        used |= set(formulaic.Formula(f"0 + I({o})").required_variables)
    text = " ".join([parsed.fixed, *parsed.offsets])
    where = {v: (m.start() if (m := re.search(rf"(?<![\w.]){re.escape(v)}(?![\w.])", text)) else len(text))
             for v in used}
    out = sorted(used, key=lambda v: where[v])
    given = frame.offset_input
    if given is not None and given.column is not None and given.column not in out:
        out.append(given.column)
    return out


def _is_factor(column: pd.Series) -> bool:
    dtype = column.dtype
    return not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype) or \
        isinstance(dtype, pd.CategoricalDtype)


def _expand(sizes: list[int]) -> np.ndarray:
    """R's ``expand.grid`` of ranges of these sizes: one row of indices per variable, the first fastest."""
    return np.indices(sizes[::-1]).reshape(len(sizes), -1)[::-1] if sizes else np.zeros((0, 1), dtype=np.int64)


@dataclass(frozen=True)
class ReferenceGrid:
    """Every combination of the variables' values (``values``: name → Series): ``frame`` (one row each,
    first variable varying fastest, as R's ``expand.grid``), ``codes`` (per variable, each row's
    position in its values), the model matrix ``X`` of those rows, their ``offset``, and which rows
    are ``estimable``."""

    values: dict
    factors: list[str]
    frame: pd.DataFrame
    codes: dict
    X: np.ndarray
    offset: np.ndarray
    estimable: np.ndarray


def reference_grid(result, at: dict | None = None) -> ReferenceGrid:
    """emmeans' ``ref_grid(m, at)`` of a fit (see the module docstring)."""
    model = result.model
    frame, stream = model.frame, model.stream
    if model.data is None and stream is None:
        raise ValueError("estimated marginal means build the reference grid from the data of the fit: not "
                         "available for a model built from arrays")
    data = model.data.loc[frame.row_index] if stream is None else None
    at = dict(at or {})
    names = _variables(frame)
    unknown = [v for v in at if v not in names]
    if unknown:
        raise ValueError(f"at= names {unknown[0]!r}, which is not a variable of the fixed effects "
                         f"({', '.join(names) or 'none'})")
    values, factors = {}, []
    from ..frame import _codes

    for v in names:
        if stream is None:
            column = data[v]
        else:  # read in pieces: the levels and sums of pass 1
            levels = stream.encoder.levels.get(v)
            column = None if levels is None else pd.Series(pd.Categorical([], categories=levels))
        if column is not None and _is_factor(column):
            levels = _codes(column)[1] if stream is None else column.cat.categories
            if v in at:
                chosen = [at[v]] if isinstance(at[v], str) or np.ndim(at[v]) == 0 else list(at[v])
                missing = [x for x in chosen if x not in set(levels)]
                if missing:
                    raise ValueError(f"at= gives {v!r} the value {missing[0]!r}, which is not one of its levels")
                levels = pd.Index(chosen)
            values[v] = pd.Series(pd.Categorical(levels, categories=column.cat.categories)
                                  if isinstance(column.dtype, pd.CategoricalDtype) else pd.array(list(levels),
                                                                                                dtype=column.dtype))
            factors.append(v)
        else:
            mean = stream.means[v] if column is None else column.to_numpy(dtype=float).mean()
            values[v] = pd.Series(np.atleast_1d(np.asarray(at[v], dtype=float)) if v in at else np.array([mean]))
    index = _expand([len(values[v]) for v in names])
    codes = dict(zip(names, index))
    grid = pd.DataFrame({v: values[v].iloc[codes[v]].reset_index(drop=True) for v in names}) \
        if names else pd.DataFrame(index=range(1))
    encoded = grid if stream is None else stream.encoder.categorize(grid)  # a piece's encoding
    X = np.asarray(frame.fixed_spec.get_model_matrix(encoded, na_action="ignore"), dtype=float)
    if X.shape[0] != len(grid):  # no variables: the intercept alone
        X = np.ones((len(grid), X.shape[1]))
    offset = np.zeros(len(grid))
    formula_offsets = offset_values(frame.formula.offsets, grid, grid.index)
    if formula_offsets is not None:
        offset += formula_offsets
    given = frame.offset_input
    if given is not None:  # the offset argument at its mean: a column on the grid, or values
        offset += grid[given.column].to_numpy(dtype=float) if given.column is not None else \
            frame.offset.mean() - _mean_or_zero(offset_values(frame.formula.offsets, data, data.index))
    return ReferenceGrid(values, factors, grid, codes, X, offset, _estimable(result, data, encoded))


def _mean_or_zero(values: np.ndarray | None) -> float:
    return 0.0 if values is None else float(values.mean())


def _estimable(result, data: pd.DataFrame, grid: pd.DataFrame) -> np.ndarray:
    """Which grid rows are estimable: all, unless aliased columns were dropped (then ℓ, in every
    column, must be orthogonal to the null space of the full model matrix)."""
    spec = result.model.frame.fixed_spec
    if not hasattr(spec, "keep"):
        return np.ones(len(grid), dtype=bool)
    if data is None:
        raise ValueError("marginal means of a rank-deficient model read in pieces: which cells are estimable "
                         "needs its rows in memory")
    full = spec.model_spec
    X = np.asarray(full.get_model_matrix(data, na_action="ignore"), dtype=float)
    _, s, Vt = np.linalg.svd(X, full_matrices=False)  # X has more rows than columns (the fit checked)
    rank = int(np.sum(s > s[0] * max(X.shape) * np.finfo(float).eps))
    null = Vt[rank:].T
    L = np.asarray(full.get_model_matrix(grid, na_action="ignore"), dtype=float)
    ratio = np.sqrt(np.sum((L @ null) ** 2, axis=1) / np.maximum(np.sum(L ** 2, axis=1), 1e-300))
    return ratio < ESTIMABLE_TOL


@dataclass
class Means:
    """The marginal means of one call: ``cells`` (a row per mean: its spec and by values), the
    linear functions ``L`` of β, their ``offset``, ``estimable``; with the ``tester`` of the df method."""

    cells: pd.DataFrame
    specs: list[str]
    by: list[str]
    L: np.ndarray
    offset: np.ndarray
    estimable: np.ndarray
    tester: object
    ddf: str
    averaged: list[str]


def marginal_means(result, specs, by=None, at=None, ddf: str = "kenward-roger") -> Means:
    names, by = _parse_specs(specs, by)
    key = _DDF.get(str(ddf).lower().replace("_", "-"))
    if key is None:
        raise ValueError(f"ddf must be 'kenward-roger', 'satterthwaite' or 'asymptotic', not {ddf!r}")
    grid = reference_grid(result, at)
    wanted = names + [b for b in by if b not in names]
    missing = [v for v in wanted if v not in grid.values]
    if missing:
        raise ValueError(f"{missing[0]!r} is not a variable of the fixed effects "
                         f"({', '.join(grid.values) or 'none'})")
    # cells in expand.grid order of the spec then by variables (the first fastest); each the average
    # of its grid rows
    sizes = [len(grid.values[v]) for v in wanted]
    cell = np.zeros(len(grid.frame), dtype=np.int64)
    stride = 1
    for v, n in zip(wanted, sizes):
        cell += stride * grid.codes[v]
        stride *= n
    ncell = int(np.prod(sizes))
    counts = np.bincount(cell, minlength=ncell).astype(float)
    L = np.zeros((ncell, grid.X.shape[1]))
    np.add.at(L, cell, grid.X)
    offset = np.bincount(cell, weights=grid.offset, minlength=ncell)
    est = np.bincount(cell, weights=(~grid.estimable).astype(float), minlength=ncell) == 0
    L /= counts[:, None]
    offset /= counts
    index = _expand(sizes)
    cells = pd.DataFrame({v: grid.values[v].iloc[index[i]].reset_index(drop=True) for i, v in enumerate(wanted)})
    averaged = [v for v in grid.factors if v not in wanted]
    return Means(cells, names, [b for b in by if b not in names], L, offset, est, _tester(result, key), key,
                 averaged)


def _tester(result, key: str):
    """The df method's tester; Kenward–Roger of an ML fit through its REML refit (emmeans' way)."""
    from .ddf import ddf_method

    if key == "kenward-roger" and not result.reml:
        cache = result.__dict__.setdefault("_ddf_cache", {})
        if "kenward-roger (REML refit)" not in cache:
            from ..memory import without_hugepage_advice

            with without_hugepage_advice():
                cache["kenward-roger (REML refit)"] = _RefitKenwardRoger(result)
        return cache["kenward-roger (REML refit)"]
    return ddf_method(result, key)


class _RefitKenwardRoger:
    """emmeans' Kenward–Roger for a maximum-likelihood fit: pbkrtest's ``vcovAdj`` refits by REML, so
    the SE is the REML fit's adjusted one and the df ``Lb_ddf`` with the ML fit's covariance; the
    estimate is the ML fit's."""

    def __init__(self, result):
        from .ddf import KenwardRoger, _fixed_cov  # noqa: PLC0415

        reml = result.model.with_criterion(reml=True).fit(theta0=result.theta.to_numpy())
        self.kr = KenwardRoger(reml)
        self.beta = result._sol.beta
        self.V0 = _fixed_cov(result)[1]

    def test(self, L):
        from .ddf import ContrastTest, _check_L

        L = _check_L(L, self.beta.size)
        df, _, _ = self.kr._adjust(L, self.V0)
        est = float(L[0] @ self.beta)
        se = float(np.sqrt(L[0] @ self.kr.PhiA @ L[0]))
        t = est / se
        return ContrastTest(est, se, 1, df, t * t, float(t_two_sided(t, df)))


def _tests(tester, L: np.ndarray, ok: np.ndarray):
    """(estimate, SE, df) of each row of L; NaN where not ``ok`` (not estimable)."""
    out = np.full((L.shape[0], 3), np.nan)
    for i in np.flatnonzero(ok):
        t = tester.test(L[i])
        out[i] = t.estimate, t.se, t.den_df
    return out


def _ci_columns(df: np.ndarray) -> tuple[str, str]:
    return ("asymp.LCL", "asymp.UCL") if len(df) and np.all(np.isinf(df)) else ("lower.CL", "upper.CL")


def emmeans_table(means: Means, level: float = 0.95) -> pd.DataFrame:
    """emmeans' summary of the means: the cells, ``emmean``, ``SE``, ``df`` and confidence limits."""
    est, se, df = _tests(means.tester, means.L, means.estimable).T
    est = est + means.offset
    crit = np.array([t_ppf(0.5 + level / 2, d) for d in df])
    lo, hi = _ci_columns(df)
    out = means.cells.copy()
    out["emmean"], out["SE"], out["df"] = est, se, df
    out[lo], out[hi] = est - crit * se, est + crit * se
    notes = []
    if means.averaged:
        notes.append(f"Results are averaged over the levels of: {', '.join(means.averaged)}")
    notes += [f"Degrees-of-freedom method: {means.ddf}", f"Confidence level used: {level:g}"]
    out.attrs["notes"] = notes
    return out


# --- contrasts ----------------------------------------------------------------------------------
METHODS = ("pairwise", "revpairwise", "trt.vs.ctrl", "eff")
_DEFAULT_ADJUST = {"pairwise": "tukey", "revpairwise": "tukey", "trt.vs.ctrl": "dunnettx", "eff": "fdr"}
ADJUSTMENTS = ("tukey", "sidak", "scheffe", "dunnettx", "bonferroni", "holm", "hochberg", "BH", "fdr", "BY",
               "none")


def _coefficients(method, labels: list[str], ref: int) -> tuple[list[str], np.ndarray]:
    """Contrast labels and coefficient rows over the means of one group."""
    k = len(labels)
    rows, names = [], []
    if isinstance(method, dict):
        for name, c in method.items():
            c = np.asarray(c, dtype=float)
            if c.shape != (k,):
                raise ValueError(f"contrast {name!r} has {c.size} coefficients for {k} means")
            names.append(str(name))
            rows.append(c)
        return names, np.array(rows)
    if method == "pairwise":
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    elif method == "revpairwise":
        pairs = [(j, i) for j in range(k) for i in range(j)]
    elif method == "trt.vs.ctrl":
        if not 0 <= ref < k:
            raise ValueError(f"ref must be between 0 and {k - 1} (the position of the control level), not {ref}")
        pairs = [(i, ref) for i in range(k) if i != ref]
    elif method == "eff":
        for i in range(k):
            c = np.full(k, -1.0 / k)
            c[i] += 1.0
            rows.append(c)
            names.append(f"{labels[i]} effect")
        return names, np.array(rows)
    else:
        raise ValueError(f"method must be one of {', '.join(METHODS)} or a dict of coefficient vectors, not "
                         f"{method!r}")
    for i, j in pairs:
        c = np.zeros(k)
        c[i], c[j] = 1.0, -1.0
        rows.append(c)
        names.append(f"{labels[i]} - {labels[j]}")
    return names, np.array(rows).reshape(len(pairs), k)


def _p_adjust(p: np.ndarray, method: str) -> np.ndarray:
    """R's ``p.adjust`` for one family."""
    n = len(p)
    if method == "none" or n == 0:
        return p
    if method == "bonferroni":
        return np.minimum(1.0, n * p)
    if method == "holm":
        o = np.argsort(p, kind="stable")
        out = np.minimum(1.0, np.maximum.accumulate((n - np.arange(n)) * p[o]))
        return out[np.argsort(o, kind="stable")]
    o = np.argsort(-p, kind="stable")  # decreasing
    i = np.arange(n, 0, -1)
    if method == "hochberg":
        out = np.minimum(1.0, np.minimum.accumulate((n - i + 1) * p[o]))
    elif method in ("BH", "fdr"):
        out = np.minimum(1.0, np.minimum.accumulate(n / i * p[o]))
    elif method == "BY":
        q = np.sum(1.0 / np.arange(1, n + 1))
        out = np.minimum(1.0, np.minimum.accumulate(q * n / i * p[o]))
    else:
        raise ValueError(f"unknown p-value adjustment {method!r}")
    return out[np.argsort(o, kind="stable")]


def _dunnettx_cdf(x: float, k: int, df: float) -> float:
    """emmeans' ``.pdunnx``: a blend of the studentized range and Šidák for k comparisons with a control."""
    w = (k - 1) / k
    return w * ptukey(np.sqrt(2) * x, (1 + np.sqrt(1 + 8 * k)) / 2, df) + (1 - w) * (1 - f_sf(x * x, 1, df)) ** k


def _adjusted_p(t: np.ndarray, df: np.ndarray, adjust: str, nmeans: int, rank: int) -> np.ndarray:
    p = t_two_sided(t, df)
    n = len(t)
    if adjust in ("bonferroni", "holm", "hochberg", "BH", "fdr", "BY", "none"):
        return _p_adjust(p, adjust)
    if adjust == "sidak":
        return 1 - (1 - p) ** n
    if adjust == "tukey":
        return np.array([1 - ptukey(np.sqrt(2) * abs(ti), nmeans, di) for ti, di in zip(t, df)])
    if adjust == "scheffe":
        return f_sf(t * t / rank, rank, df)
    if adjust == "dunnettx":
        return np.array([1 - _dunnettx_cdf(abs(ti), n, di) for ti, di in zip(t, df)])
    raise ValueError(f"adjust must be one of {', '.join(ADJUSTMENTS)}, not {adjust!r}")


def _critical(df: float, level: float, adjust: str, n: int, nmeans: int, rank: int) -> float:
    """emmeans' critical value of an adjusted confidence interval (``.adj.critval``)."""
    if adjust == "none":
        return float(t_ppf(0.5 + level / 2, df))
    if adjust == "tukey":
        return qtukey(level, nmeans, df) / np.sqrt(2)
    if adjust == "sidak":
        return float(t_ppf((1 + level ** (1 / n)) / 2, df))
    if adjust == "scheffe":
        return float(np.sqrt(rank * f_ppf(level, rank, df)))
    if adjust == "dunnettx":
        from scipy.optimize import brentq

        lo, hi = float(t_ppf(0.5 + level / 2, df)), float(t_ppf(1 - (1 - level) / (2 * n), df)) + 1.0
        return brentq(lambda x: _dunnettx_cdf(x, n, df) - level, lo, hi, xtol=1e-10)
    return float(t_ppf(1 - (1 - level) / (2 * n), df))  # p.adjust methods: Bonferroni limits, as emmeans


def contrast_table(means: Means, method="pairwise", adjust: str | None = None, ref: int = 0,
                   confint: bool = False, level: float = 0.95) -> pd.DataFrame:
    """emmeans' ``contrast(emm, method, adjust)`` summary: per ``by`` group, ``contrast``, ``estimate``,
    ``SE``, ``df``, ``t.ratio`` (``z.ratio`` for asymptotic df), ``p.value``; with ``confint``, the
    (adjusted) confidence limits."""
    name = "custom" if isinstance(method, dict) else method
    requested = adjust
    adjust = _DEFAULT_ADJUST.get(name, "none") if adjust is None else adjust
    if adjust not in ADJUSTMENTS:
        raise ValueError(f"adjust must be one of {', '.join(ADJUSTMENTS)}, not {adjust!r}")
    notes = []
    if adjust == "tukey" and name not in ("pairwise", "revpairwise"):
        adjust = "sidak"
        notes.append("Note: adjust = \"tukey\" was changed to \"sidak\" because \"tukey\" is only appropriate "
                     "for one set of pairwise comparisons")
    cells, by = means.cells, means.by
    group = pd.factorize(pd.MultiIndex.from_frame(cells[by]))[0] if by else np.zeros(len(cells), dtype=int)
    groups = [np.flatnonzero(group == g) for g in range(group.max() + 1)]  # in order of appearance
    out = []
    family = None
    for g in groups:  # each by group its own family of contrasts over its means
        labels = [" ".join(str(v) for v in row) for row in cells.iloc[g][means.specs].itertuples(index=False)]
        names, C = _coefficients(method, labels, ref)
        ok = np.array([bool(np.all(means.estimable[g][np.abs(c) > 0])) for c in C])
        est, se, df = _tests(means.tester, C @ means.L[g], ok).T
        est = est + C @ means.offset[g]
        t = est / se
        n, nmeans = len(names), len(g)
        adj = adjust if (n > 1 or adjust == "scheffe") else "none"
        rank = int(np.linalg.matrix_rank(C)) if len(C) else 0
        p = _adjusted_p(t, df, adj, nmeans, max(rank, 1))
        part = pd.DataFrame({"contrast": names})
        for b in by:
            part[b] = cells.iloc[g[0]][b]
        part["estimate"], part["SE"], part["df"] = est, se, df
        if confint:
            ci_adj = adj if adj in ("none", "tukey", "sidak", "scheffe", "dunnettx") else "bonferroni"
            crit = np.array([_critical(d, level, ci_adj, n, nmeans, max(rank, 1)) for d in df])
            lo, hi = _ci_columns(df)
            part[lo], part[hi] = est - crit * se, est + crit * se
        part["z.ratio" if np.all(np.isinf(df)) else "t.ratio"] = t
        part["p.value"] = p
        out.append(part)
        family = (adj, n, nmeans, rank)
    table = pd.concat(out, ignore_index=True)
    if means.averaged:
        notes.append(f"Results are averaged over the levels of: {', '.join(means.averaged)}")
    notes.append(f"Degrees-of-freedom method: {means.ddf}")
    if confint:
        notes.append(f"Confidence level used: {level:g}")
    adj, n, nmeans, rank = family
    if adj != "none":
        what = {"tukey": f"for comparing a family of {nmeans} estimates", "scheffe": f"with rank {rank}"}.get(
            adj, f"for {n} tests")
        notes.append(f"P value adjustment: {adj} method {what}")
    table.attrs["notes"] = notes
    table.attrs["adjust"] = adj if requested is None else requested
    return table
