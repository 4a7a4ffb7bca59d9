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

Residuals and fitted values are conditional (``X β̂ + Z b̂``), as in lme4.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import ndtri

#: Up to this many levels in a caterpillar panel, the levels are named on the y axis.
MAX_LABELS = 60


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
