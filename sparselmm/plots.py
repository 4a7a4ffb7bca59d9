"""Diagnostic plots of a fitted model (matplotlib, the ``[plot]`` extra).

Each function takes the :class:`~sparselmm.LMMResults` of
:func:`sparselmm.fit` and returns a :class:`matplotlib.figure.Figure`;
matplotlib is imported only when a function is called, never by
``import sparselmm``. The figures are made without pyplot: save one with
``fig.savefig(path)``, let Jupyter display it, or pass ``ax=`` (or ``fig=``)
to draw into a figure of your own. In lme4's terms:

- :func:`caterpillar` is ``lattice::dotplot(ranef(m, condVar = TRUE))``:
  per grouping factor, one panel per random-effect column, the levels sorted
  by their conditional mode of the first column, the mode ± z·(conditional
  sd) as horizontal bars.
- :func:`residuals_vs_fitted` is ``plot(m)``: residuals against fitted
  values, with a line at 0.
- :func:`qq_residuals` is ``qqnorm(resid(m)); qqline(resid(m))``.
- :func:`qq_random_effects` is ``lattice::qqmath(ranef(m))`` without the
  intervals: one normal Q–Q panel per random-effect column and grouping
  factor.
- :func:`profile_zeta` is ``xyplot(profile(m))``: per parameter, the
  profile ζ against the parameter's value, reference lines at ζ = ±z and
  the profile interval's ends (it also takes the traces of
  ``result.profile()`` themselves).

Residuals and fitted values are conditional (``X β̂ + Z b̂``), as in lme4.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from scipy.special import ndtri

#: Up to this many levels in a caterpillar panel, the levels are named on the y axis.
MAX_LABELS = 60

#: lme4's ``conf`` of ``xyplot(profile(m))``: pass ``levels=LME4_LEVELS`` to draw them all.
LME4_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)

#: The columns of a profile-trace DataFrame (:meth:`~sparselmm.LMMResults.profile`).
TRACE_COLUMNS = ("parameter", "value", "zeta")


# --- helpers -------------------------------------------------------------
def _figure(fig=None, figsize=None):
    """``fig`` itself, or a new pyplot-free Figure with constrained layout."""
    if fig is not None:
        return fig
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _axes(ax, figsize):
    """(figure, axes): the figure of ``ax``, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig = _figure(figsize=figsize)
    return fig, fig.add_subplot()


def _groups(result, group) -> list[str]:
    """The grouping factors to draw: all of them, or the one named."""
    names = list(result.random_effects)
    if group is None:
        return names
    if group not in names:
        raise ValueError(f"group={group!r} is not a grouping factor of the model; "
                         f"choose one of {names}")
    return [group]


def _panel_grid(fig, ncols, height_ratios=None, sharey=False):
    """Rows of ``ncols[i]`` panels (one row per grouping factor)."""
    grid = fig.add_gridspec(len(ncols), max(ncols), height_ratios=height_ratios)
    rows = []
    for i, n in enumerate(ncols):
        first = fig.add_subplot(grid[i, 0])
        share = first if sharey else None
        rows.append([first] + [fig.add_subplot(grid[i, j], sharey=share) for j in range(1, n)])
    return rows


def plotting_positions(n: int) -> np.ndarray:
    """Standard normal quantiles of R's ``ppoints(n)`` (the x of ``qqnorm``)."""
    a = 3 / 8 if n <= 10 else 1 / 2
    return ndtri((np.arange(1, n + 1) - a) / (n + 1 - 2 * a))


def _qq(ax, values, **style) -> None:
    """Sorted ``values`` against normal quantiles, and R's ``qqline``."""
    y = np.sort(np.asarray(values, dtype=float))
    x = plotting_positions(len(y))
    ax.plot(x, y, "o", ms=3, **style)
    # qqline: through the first and third quartiles of the data and of N(0, 1)
    y1, y3 = np.quantile(y, [0.25, 0.75])
    x1, x3 = ndtri(0.25), ndtri(0.75)
    ax.axline((x1, y1), slope=(y3 - y1) / (x3 - x1), color="0.4", lw=1)
    ax.set_xlabel("Standard normal quantiles")


def _levels(levels) -> list[float]:
    """The confidence levels, sorted; each strictly between 0 and 1."""
    values = [levels] if isinstance(levels, numbers.Real) else list(levels)
    if not values or not all(isinstance(v, numbers.Real) and 0 < v < 1 for v in values):
        raise ValueError(f"levels must be a level or a sequence of levels in (0, 1), got levels={levels!r}")
    return sorted(float(v) for v in values)


def _parm(parm, names) -> list[str]:
    """The parameters to draw: all of ``names``, or those named (a name or a list of names)."""
    if parm is None:
        return list(names)
    chosen = [parm] if isinstance(parm, str) else list(parm)
    unknown = [p for p in chosen if p not in names]
    if unknown or not chosen:
        raise ValueError(f"parm={parm!r} names no parameter of the profile, or one it does not have "
                         f"({unknown}); choose among {list(names)}")
    return chosen


def _check_traces(traces: pd.DataFrame) -> pd.DataFrame:
    """A profile-trace DataFrame, checked, sorted by value within each parameter."""
    missing = [c for c in TRACE_COLUMNS if c not in traces.columns]
    if missing:
        raise ValueError(f"profile traces need the columns {list(TRACE_COLUMNS)} (as returned by "
                         f"LMMResults.profile()); missing {missing}")
    if traces.empty:
        raise ValueError("the profile traces are empty")
    for col in ("value", "zeta"):
        if not pd.api.types.is_numeric_dtype(traces[col]) or pd.api.types.is_bool_dtype(traces[col]):
            raise ValueError(f"profile traces: column {col!r} must be numeric, not {traces[col].dtype}")
    return traces.sort_values("value", kind="stable")


def _trace_ends(traces: pd.DataFrame, name: str, z: float) -> tuple[float, float]:
    """The values at ζ = −z and z, interpolated along a trace (NaN where the trace does not reach).

    A monotone cubic (PCHIP) of the value in ζ, as lme4's ``confint`` of a profile interpolates
    by a spline; a trace whose ζ is not increasing gives NaN.
    """
    from scipy.interpolate import PchipInterpolator

    tr = traces[traces["parameter"] == name]
    zeta, value = tr["zeta"].to_numpy(float), tr["value"].to_numpy(float)
    ok = np.isfinite(zeta) & np.isfinite(value)
    zeta, value = zeta[ok], value[ok]
    if len(zeta) < 2 or np.any(np.diff(zeta) <= 0):
        return np.nan, np.nan
    inverse = PchipInterpolator(zeta, value, extrapolate=False)
    return float(inverse(-z)), float(inverse(z))


# --- plots -----------------------------------------------------------------
def caterpillar(result, group=None, level=0.95, max_levels=None, *, fig=None, figsize=None):
    """Caterpillar plot of the conditional modes (lme4's ``dotplot(ranef(m, condVar=TRUE))``).

    Parameters
    ----------
    result : LMMResults
        A fit of :func:`sparselmm.fit`.
    group : str, optional
        The grouping factor to draw; by default all, one row of panels each.
    level : float, default 0.95
        Coverage of the bars: mode ± z·sd with z the normal quantile
        of ``(1 + level) / 2`` (1.96 for 0.95).
    max_levels : int, optional
        Draw at most this many levels per factor, evenly spaced in the sorted
        order (the smallest and largest modes are always drawn).
    fig : matplotlib.figure.Figure, optional
        Draw into this (empty) figure instead of a new one.
    figsize : (float, float), optional
        Size of a new figure; by default it grows with the number of levels.

    Returns
    -------
    matplotlib.figure.Figure
        Per grouping factor a row of panels, one per random-effect column
        (titled ``"group: column"``), the levels on the y axis sorted by the
        mode of the factor's first column, a vertical line at 0. Levels are
        named on the y axis when at most ``MAX_LABELS`` are drawn.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got level={level!r}")
    if max_levels is not None and not (isinstance(max_levels, numbers.Integral) and max_levels >= 1):
        raise ValueError(f"max_levels must be a positive integer or None, got max_levels={max_levels!r}")
    groups = _groups(result, group)
    z = ndtri((1 + level) / 2)

    modes, sds, nlevels = [], [], []
    for g in groups:
        b, sd = result.random_effects[g], result.random_effects_sd[g]
        nlevels.append(len(b))
        order = np.argsort(b.iloc[:, 0].to_numpy(), kind="stable")
        if max_levels is not None and len(order) > max_levels:
            order = order[np.unique(np.linspace(0, len(order) - 1, max_levels).round().astype(int))]
        modes.append(b.iloc[order])
        sds.append(sd.loc[modes[-1].index, b.columns])

    ncols = [b.shape[1] for b in modes]
    heights = [0.8 + 0.16 * min(len(b), MAX_LABELS) for b in modes]  # inches
    if figsize is None:
        figsize = (1.0 + 2.6 * max(ncols), min(sum(heights), 14.0))
    fig = _figure(fig, figsize)
    rows = _panel_grid(fig, ncols, heights, sharey=True)

    for g, b, sd, n, axes in zip(groups, modes, sds, nlevels, rows):
        y = np.arange(len(b))
        for col, ax in zip(b.columns, axes):
            ax.errorbar(b[col].to_numpy(), y, xerr=z * sd[col].to_numpy(), fmt="o", ms=3,
                        color="C0", ecolor="C0", elinewidth=1, capsize=0)
            ax.axvline(0.0, color="0.4", lw=1, ls="--")
            ax.set_title(f"{g}: {col}")
            ax.set_ylim(-1, len(b))
        first = axes[0]
        if len(b) < n:
            first.set_ylabel(f"{len(b)} of {n} levels")
        if len(b) <= MAX_LABELS:
            first.set_yticks(y, [str(v) for v in b.index])
            first.tick_params(axis="y", labelsize=7)
        else:
            first.set_yticks([])
        for ax in axes[1:]:
            ax.tick_params(axis="y", labelleft=False)
    return fig


def residuals_vs_fitted(result, *, ax=None, figsize=None):
    """Residuals against fitted values, with a line at 0 (lme4's ``plot(m)``).

    Parameters
    ----------
    result : LMMResults
        A fit of :func:`sparselmm.fit`.
    ax : matplotlib.axes.Axes, optional
        Draw into these axes instead of a new figure.
    figsize : (float, float), optional
        Size of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure: the points (one ``Line2D`` of markers, x the fitted
        values, y the residuals) and a horizontal line at 0.
    """
    fig, ax = _axes(ax, figsize)
    ax.plot(result.fittedvalues.to_numpy(), result.resid.to_numpy(), "o", ms=3, alpha=0.6)
    ax.axhline(0.0, color="0.4", lw=1, ls="--")
    ax.set_xlabel("Fitted values")
    ax.set_ylabel("Residuals")
    ax.set_title(result.model.formula, fontsize="small")
    return fig


def qq_residuals(result, *, ax=None, figsize=None):
    """Normal Q–Q plot of the residuals (lme4's ``qqnorm(resid(m)); qqline(resid(m))``).

    Parameters
    ----------
    result : LMMResults
        A fit of :func:`sparselmm.fit`.
    ax : matplotlib.axes.Axes, optional
        Draw into these axes instead of a new figure.
    figsize : (float, float), optional
        Size of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The sorted residuals against the normal quantiles of R's
        ``ppoints(n)``, and R's ``qqline``: the line through the first and
        third quartiles of the residuals and of N(0, 1).
    """
    fig, ax = _axes(ax, figsize)
    _qq(ax, result.resid.to_numpy(), alpha=0.6)
    ax.set_ylabel("Residuals")
    ax.set_title(result.model.formula, fontsize="small")
    return fig


def qq_random_effects(result, group=None, *, fig=None, figsize=None):
    """Normal Q–Q plots of the conditional modes (lme4's ``qqmath(ranef(m))``).

    Parameters
    ----------
    result : LMMResults
        A fit of :func:`sparselmm.fit`.
    group : str, optional
        The grouping factor to draw; by default all, one row of panels each.
    fig : matplotlib.figure.Figure, optional
        Draw into this (empty) figure instead of a new one.
    figsize : (float, float), optional
        Size of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        Per grouping factor a row of panels, one per random-effect column
        (titled ``"group: column"``), each the sorted modes against normal
        quantiles with R's ``qqline``.
    """
    groups = _groups(result, group)
    ncols = [result.random_effects[g].shape[1] for g in groups]
    if figsize is None:
        figsize = (0.5 + 3.0 * max(ncols), 0.5 + 2.6 * len(groups))
    fig = _figure(fig, figsize)
    for g, axes in zip(groups, _panel_grid(fig, ncols)):
        b = result.random_effects[g]
        for col, ax in zip(b.columns, axes):
            _qq(ax, b[col].to_numpy())
            ax.set_title(f"{g}: {col}")
        axes[0].set_ylabel("Conditional modes")
    return fig


def profile_zeta(result, parm=None, levels=(0.95,), absolute=False, npoints=8, *, ncols=None, fig=None,
                 figsize=None):
    """Profile ζ plots, one panel per parameter (lme4's ``xyplot(profile(m))``).

    Parameters
    ----------
    result : LMMResults or pandas.DataFrame
        A fit of :func:`sparselmm.fit`, whose ML profile is computed
        (:meth:`~sparselmm.LMMResults.profile`) and whose interval ends are
        the exact profile roots (``confint(method="profile")``); or the traces
        themselves, a DataFrame with the columns ``parameter``, ``value`` and
        ``zeta`` as returned by ``profile()``, whose interval ends are then
        interpolated along each trace (as lme4 does; an end the trace does
        not reach, e.g. at a variance's bound 0, is not drawn).
    parm : str or list of str, optional
        The parameters to draw, in lme4's names (``"sd_(Intercept)|Subject"``,
        ``"cor_Days.(Intercept)|Subject"``, ``"sigma"``, a fixed effect); by
        default all.
    levels : float or sequence of float, default (0.95,)
        Confidence levels of the reference lines and intervals: ζ = ±z with
        z the normal quantile of ``(1 + level) / 2``. ``LME4_LEVELS`` is
        lme4's (50, 80, 90, 95, 99 %).
    absolute : bool, default False
        Plot ``|ζ|`` instead of ζ (lme4's ``absVal = TRUE``): a V per parameter,
        one reference line per level.
    npoints : int, default 8
        Points of a computed profile on each side of the estimate (ignored
        for a DataFrame).
    ncols : int, optional
        Panels per row; by default up to 3 (2 for 4 panels).
    fig : matplotlib.figure.Figure, optional
        Draw into this (empty) figure instead of a new one.
    figsize : (float, float), optional
        Size of a new figure; by default 3 × 2.4 inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per parameter (titled with its name, the y axis ζ shared by
        all panels), each with: the trace, one ``Line2D`` with gid
        ``"trace"`` through the profile's points (x the value, y ζ, sorted by
        the value); a line at ζ = 0 (not for ``absolute``); per level, dotted
        horizontal lines at ζ = ±z (gid ``"reference"``, only +z for
        ``absolute``); and per level and interval end x, a vertical segment
        from (x, 0) to (x, ∓z) (gid ``"interval"``, lower end first, as
        lme4 draws them).
    """
    from matplotlib.ticker import MaxNLocator

    levels = _levels(levels)
    zs = ndtri((1 + np.array(levels)) / 2)
    absolute = bool(absolute)
    if isinstance(result, pd.DataFrame):
        traces = _check_traces(result)
        names = _parm(parm, list(pd.unique(result["parameter"])))
        ends = {nm: [_trace_ends(traces, nm, z) for z in zs] for nm in names}
    elif hasattr(result, "profile") and hasattr(result, "confint") and hasattr(result, "model"):
        if not (isinstance(npoints, numbers.Integral) and npoints >= 1):
            raise ValueError(f"npoints must be a positive integer, got npoints={npoints!r}")
        from .inference.profile import varpar_names

        names = _parm(parm, varpar_names(result.model.layout) + list(result.fe_params.index))
        traces = _check_traces(result.profile(names, npoints))
        cis = [result.confint(names, level=lev, method="profile") for lev in levels]
        ends = {nm: [tuple(ci.loc[nm].to_numpy(float)) for ci in cis] for nm in names}
    else:
        raise TypeError("profile_zeta needs an LMMResults of sparselmm.fit or a DataFrame of profile "
                        f"traces (LMMResults.profile()), not {type(result).__name__}")
    if ncols is None:
        ncols = 2 if len(names) == 4 else min(len(names), 3)
    elif not (isinstance(ncols, numbers.Integral) and ncols >= 1):
        raise ValueError(f"ncols must be a positive integer or None, got ncols={ncols!r}")
    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    if figsize is None:
        figsize = (0.4 + 3.0 * ncols, 0.3 + 2.4 * nrows)
    fig = _figure(fig, figsize)
    grid = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    for ax in grid.flat[len(names):]:
        fig.delaxes(ax)

    for name, ax in zip(names, grid.flat):
        tr = traces[traces["parameter"] == name]
        zeta = tr["zeta"].to_numpy(float)
        if not absolute:
            ax.axhline(0.0, color="0.4", lw=0.8)
        for z in zs:
            for y in ((z,) if absolute else (-z, z)):
                ax.axhline(y, color="0.55", lw=0.8, ls=":", gid="reference")
        ax.plot(tr["value"].to_numpy(float), np.abs(zeta) if absolute else zeta, "-o", ms=2.5, lw=1.2,
                color="C0", gid="trace")
        for z, (lo, hi) in zip(zs, ends[name]):
            for x, y in ((lo, z if absolute else -z), (hi, z)):
                if np.isfinite(x):
                    ax.plot([x, x], [0.0, y], color="C3", lw=1, gid="interval")
        ax.set_title(name, fontsize="medium")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    for row in grid:
        row[0].set_ylabel("|ζ|" if absolute else "ζ")
    return fig
