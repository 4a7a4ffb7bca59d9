"""Diagnostic plots: the PNGs are real images and the plotted data are the fit's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from scipy.stats import norm  # noqa: E402

import sparselmm  # noqa: E402
from sparselmm import plots  # noqa: E402

DATA = Path(__file__).parent / "data"
Z95 = 1.959964
DPI = 60


@pytest.fixture(scope="module")
def sleep():
    data = pd.read_csv(DATA / "sleepstudy.csv", dtype={"Subject": str})
    return sparselmm.fit("Reaction ~ 1 + Days + (1 + Days|Subject)", data)


@pytest.fixture(scope="module")
def pen():
    data = pd.read_csv(DATA / "penicillin.csv", dtype={"plate": str, "sample": str})
    return sparselmm.fit("diameter ~ 1 + (1|plate) + (1|sample)", data)


def fake_result(nlevels: int, seed: int = 0) -> SimpleNamespace:
    """Only what caterpillar reads: modes and conditional sds of one factor."""
    rng = np.random.default_rng(seed)
    index = pd.Index([f"L{i}" for i in range(nlevels)])
    cols = ["(Intercept)", "x"]
    b = pd.DataFrame(rng.normal(size=(nlevels, 2)), index=index, columns=cols)
    sd = pd.DataFrame(rng.uniform(0.1, 0.5, size=(nlevels, 2)), index=index, columns=cols)
    return SimpleNamespace(random_effects={"g": b}, random_effects_sd={"g": sd})


def check_png(fig, path: Path) -> None:
    """The figure saves as a PNG of the figure's size that is not one flat colour."""
    fig.savefig(path, dpi=DPI)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    size = np.array([fig.get_figheight(), fig.get_figwidth()]) * DPI
    assert np.all(np.abs(np.array(img.shape[:2]) - size) <= 1) and img.shape[2] in (3, 4)
    assert np.ptp(img[..., :3]) > 0.5


def panels(fig) -> dict[str, object]:
    return {ax.get_title(): ax for ax in fig.axes}


def errorbar_data(ax):
    """(x, y, half-widths of the bars) of the axes' one errorbar."""
    (container,) = ax.containers
    line, _, (bars,) = container
    seg = np.array(bars.get_segments())
    np.testing.assert_allclose(seg.mean(axis=1)[:, 0], line.get_xdata())
    return np.asarray(line.get_xdata()), np.asarray(line.get_ydata()), (seg[:, 1, 0] - seg[:, 0, 0]) / 2


# --- caterpillar -------------------------------------------------------------
def test_caterpillar_sleepstudy(sleep, tmp_path):
    fig = plots.caterpillar(sleep)
    check_png(fig, tmp_path / "caterpillar.png")
    b, sd = sleep.random_effects["Subject"], sleep.random_effects_sd["Subject"]
    order = np.argsort(b["(Intercept)"].to_numpy(), kind="stable")
    axes = panels(fig)
    assert list(axes) == ["Subject: (Intercept)", "Subject: Days"]
    for col in b.columns:
        ax = axes[f"Subject: {col}"]
        x, y, half = errorbar_data(ax)
        np.testing.assert_allclose(x, b[col].to_numpy()[order])
        np.testing.assert_array_equal(y, np.arange(len(b)))
        np.testing.assert_allclose(half, Z95 * sd[col].to_numpy()[order], rtol=1e-6)
        assert any(np.array_equal(line.get_xdata(), [0, 0]) for line in ax.lines)
    labels = [t.get_text() for t in axes["Subject: (Intercept)"].get_yticklabels()]
    assert labels == list(b.index[order])
    assert b["(Intercept)"].iloc[order].is_monotonic_increasing


def test_caterpillar_level(sleep):
    fig = plots.caterpillar(sleep, level=0.8)
    sd = sleep.random_effects_sd["Subject"].sort_index()
    _, _, half = errorbar_data(panels(fig)["Subject: Days"])
    np.testing.assert_allclose(np.sort(half), np.sort(1.2815516 * sd["Days"].to_numpy()), rtol=1e-6)


def test_caterpillar_crossed(pen, tmp_path):
    fig = plots.caterpillar(pen)
    check_png(fig, tmp_path / "crossed.png")
    axes = panels(fig)
    assert list(axes) == ["plate: (Intercept)", "sample: (Intercept)"]
    for g in ("plate", "sample"):
        x, _, half = errorbar_data(axes[f"{g}: (Intercept)"])
        b, sd = pen.random_effects[g]["(Intercept)"], pen.random_effects_sd[g]["(Intercept)"]
        np.testing.assert_allclose(x, np.sort(b.to_numpy()))
        np.testing.assert_allclose(half, Z95 * sd.loc[b.sort_values(kind="stable").index].to_numpy(),
                                   rtol=1e-6)
    only = plots.caterpillar(pen, group="sample")
    assert [ax.get_title() for ax in only.axes] == ["sample: (Intercept)"]


def test_caterpillar_many_levels_few_artists(tmp_path):
    result = fake_result(5000)
    fig = plots.caterpillar(result)
    check_png(fig, tmp_path / "many.png")
    for ax in fig.axes:  # one errorbar, one zero line: no artist per level
        assert len(ax.containers) == 1 and len(ax.lines) == 2 and len(ax.collections) == 1
        assert not ax.texts and len(ax.get_yticks()) == 0
        assert len(ax.containers[0][0].get_xdata()) == 5000


def test_caterpillar_max_levels():
    result = fake_result(1000)
    b = result.random_effects["g"]["(Intercept)"].sort_values(kind="stable")
    fig = plots.caterpillar(result, max_levels=50)
    x, y, _ = errorbar_data(panels(fig)["g: (Intercept)"])
    assert len(x) == 50 and np.all(np.diff(x) > 0)
    assert x[0] == b.iloc[0] and x[-1] == b.iloc[-1]  # extremes always drawn
    np.testing.assert_allclose(x, b.to_numpy()[np.linspace(0, 999, 50).round().astype(int)])
    assert fig.axes[0].get_ylabel() == "50 of 1000 levels"
    # fewer levels than max_levels: all drawn
    x, _, _ = errorbar_data(panels(plots.caterpillar(result, max_levels=5000))["g: x"])
    assert len(x) == 1000


def test_caterpillar_into_figure(sleep):
    fig = Figure()
    assert plots.caterpillar(sleep, fig=fig) is fig and len(fig.axes) == 2


# --- residuals ---------------------------------------------------------------
def test_residuals_vs_fitted(sleep, tmp_path):
    fig = plots.residuals_vs_fitted(sleep)
    check_png(fig, tmp_path / "rvf.png")
    (ax,) = fig.axes
    points, zero = ax.lines
    np.testing.assert_array_equal(points.get_xdata(), sleep.fittedvalues.to_numpy())
    np.testing.assert_array_equal(points.get_ydata(), sleep.resid.to_numpy())
    np.testing.assert_array_equal(zero.get_ydata(), [0, 0])
    assert ax.get_title() == sleep.model.formula


def test_residuals_vs_fitted_into_axes(sleep):
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.residuals_vs_fitted(sleep, ax=ax) is fig
    assert len(ax.lines[0].get_xdata()) == sleep.nobs


def test_plotting_positions_are_r_qnorm_ppoints():
    # R: qnorm(ppoints(5)); qnorm(ppoints(20))[1:2]
    np.testing.assert_allclose(plots.plotting_positions(5),
                               [-1.1797611, -0.4972006, 0.0, 0.4972006, 1.1797611], atol=1e-7)
    np.testing.assert_allclose(plots.plotting_positions(20)[:2], norm.ppf([0.025, 0.075]))


def test_qq_residuals(sleep, tmp_path):
    fig = plots.qq_residuals(sleep)
    check_png(fig, tmp_path / "qq.png")
    (ax,) = fig.axes
    points, ref = ax.lines
    r = sleep.resid.to_numpy()
    n = len(r)
    np.testing.assert_array_equal(points.get_ydata(), np.sort(r))
    np.testing.assert_allclose(points.get_xdata(), norm.ppf((np.arange(1, n + 1) - 0.5) / n))
    # qqline: through the quartiles of the residuals and of N(0, 1)
    q1, q3 = np.quantile(r, [0.25, 0.75])
    slope = ref.get_slope() if hasattr(ref, "get_slope") else ref._slope
    np.testing.assert_allclose(slope, (q3 - q1) / (norm.ppf(0.75) - norm.ppf(0.25)))
    x1, y1 = ref.get_xy1() if hasattr(ref, "get_xy1") else ref._xy1
    np.testing.assert_allclose([x1, y1], [norm.ppf(0.25), q1])


def test_qq_random_effects(sleep, pen, tmp_path):
    fig = plots.qq_random_effects(sleep)
    check_png(fig, tmp_path / "qqre.png")
    axes = panels(fig)
    assert list(axes) == ["Subject: (Intercept)", "Subject: Days"]
    for col, values in sleep.random_effects["Subject"].items():
        points = axes[f"Subject: {col}"].lines[0]
        np.testing.assert_array_equal(points.get_ydata(), np.sort(values.to_numpy()))
        np.testing.assert_allclose(points.get_xdata(), plots.plotting_positions(len(values)))
    crossed = plots.qq_random_effects(pen)
    assert list(panels(crossed)) == ["plate: (Intercept)", "sample: (Intercept)"]
    only = plots.qq_random_effects(pen, group="plate")
    (ax,) = only.axes
    np.testing.assert_array_equal(ax.lines[0].get_ydata(),
                                  np.sort(pen.random_effects["plate"]["(Intercept)"].to_numpy()))


# --- profile ζ ----------------------------------------------------------------
PROFILE_PARMS = ["sd_(Intercept)|Subject", "sigma", "(Intercept)", "Days"]


@pytest.fixture(scope="module")
def ri():
    """Random intercept only: its profile is quick (and, unlike the correlated model's, computes)."""
    data = pd.read_csv(DATA / "sleepstudy.csv", dtype={"Subject": str})
    return sparselmm.fit("Reaction ~ 1 + Days + (1|Subject)", data)


@pytest.fixture(scope="module")
def ri_traces(ri):
    return ri.profile()


def gid_lines(ax, gid):
    return [line for line in ax.lines if line.get_gid() == gid]


def trace_xy(ax):
    (line,) = gid_lines(ax, "trace")
    return np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)


def interval_segments(ax) -> np.ndarray:
    """(x, y end) of each vertical interval segment, which starts at ζ = 0."""
    out = []
    for line in gid_lines(ax, "interval"):
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        assert x[0] == x[1] and y[0] == 0
        out.append((x[0], y[1]))
    return np.array(out)


def reference_levels(ax) -> np.ndarray:
    ys = [line.get_ydata() for line in gid_lines(ax, "reference")]
    assert all(y[0] == y[1] for y in ys)  # horizontal
    return np.sort([y[0] for y in ys])


def test_profile_zeta_from_result(ri, ri_traces, tmp_path):
    fig = plots.profile_zeta(ri)
    check_png(fig, tmp_path / "profile.png")
    axes = panels(fig)
    assert list(axes) == PROFILE_PARMS
    ci = ri.confint(method="profile")
    z = norm.ppf(0.975)
    for name, ax in axes.items():
        trace = ri_traces[ri_traces.parameter == name].sort_values("value")
        x, y = trace_xy(ax)
        assert len(x) == 2 * 8 + 1
        np.testing.assert_allclose(x, trace.value.to_numpy(), rtol=1e-8)
        np.testing.assert_allclose(y, trace.zeta.to_numpy(), rtol=1e-6, atol=1e-8)
        assert np.all(np.diff(x) > 0) and np.all(np.diff(y) > 0)
        np.testing.assert_allclose(reference_levels(ax), [-z, z], rtol=1e-12)
        assert any(np.array_equal(line.get_ydata(), [0, 0]) for line in ax.lines if line.get_gid() is None)
        ends = interval_segments(ax)
        np.testing.assert_allclose(ends[:, 0], ci.loc[name].to_numpy(), rtol=1e-7)
        np.testing.assert_allclose(ends[:, 1], [-z, z], rtol=1e-12)
        # the ends are where the trace crosses ±z
        assert np.interp(ends[:, 0], x, y) == pytest.approx([-z, z], abs=0.02)
    assert [ax.get_ylabel() for ax in fig.axes] == ["ζ", "", "ζ", ""]  # 2 × 2, y shared


def test_profile_zeta_lme4_levels(ri):
    fig = plots.profile_zeta(ri, parm=["sigma", "Days"], levels=plots.LME4_LEVELS, npoints=3)
    axes = panels(fig)
    assert list(axes) == ["sigma", "Days"]
    zs = norm.ppf(0.5 + np.array(plots.LME4_LEVELS) / 2)
    np.testing.assert_allclose(zs[[0, 3]], [0.6744898, Z95], rtol=1e-6)
    for name, ax in axes.items():
        assert len(trace_xy(ax)[0]) == 2 * 3 + 1
        np.testing.assert_allclose(reference_levels(ax), np.sort(np.concatenate([-zs, zs])), rtol=1e-12)
        ends = interval_segments(ax).reshape(len(zs), 2, 2)  # level, (lower, upper), (x, y)
        np.testing.assert_allclose(ends[:, :, 1], np.column_stack([-zs, zs]), rtol=1e-12)
        for level, (lower, upper) in zip(plots.LME4_LEVELS, ends):
            ci = ri.confint(parm=[name], level=level, method="profile")
            np.testing.assert_allclose([lower[0], upper[0]], ci.loc[name].to_numpy(), rtol=1e-7)
        assert np.all(np.diff(ends[:, 0, 0]) < 0) and np.all(np.diff(ends[:, 1, 0]) > 0)  # nested


def test_profile_zeta_from_traces_absolute(ri, ri_traces, tmp_path):
    fig = plots.profile_zeta(ri_traces, absolute=True)
    check_png(fig, tmp_path / "absolute.png")
    axes = panels(fig)
    assert list(axes) == list(pd.unique(ri_traces.parameter))  # the DataFrame's order
    ci = ri.confint(method="profile")
    for name, ax in axes.items():
        trace = ri_traces[ri_traces.parameter == name].sort_values("value")
        x, y = trace_xy(ax)
        np.testing.assert_array_equal(x, trace.value.to_numpy())
        np.testing.assert_array_equal(y, np.abs(trace.zeta.to_numpy()))
        np.testing.assert_allclose(reference_levels(ax), [norm.ppf(0.975)], rtol=1e-12)
        assert not [line for line in ax.lines if line.get_gid() is None]  # no line at ζ = 0
        ends = interval_segments(ax)
        np.testing.assert_allclose(ends[:, 1], [Z95, Z95], rtol=1e-6)
        # interpolated along the trace: close to the exact roots
        np.testing.assert_allclose(ends[:, 0], ci.loc[name].to_numpy(), rtol=1e-4)
        assert ax.get_ylabel() in ("|ζ|", "")
    only = plots.profile_zeta(ri_traces, parm="Days")
    assert [ax.get_title() for ax in only.axes] == ["Days"]


def test_profile_zeta_traces_interpolated():
    """A linear trace: the ends are exact; an end the trace does not reach is not drawn."""
    zeta = np.linspace(-1.0, 3.0, 9)
    traces = pd.DataFrame({"parameter": "a", "value": 2.0 + 0.5 * zeta, "zeta": zeta})
    fig = plots.profile_zeta(traces.iloc[::-1], levels=[0.5, 0.95])  # any row order
    (ax,) = fig.axes
    x, y = trace_xy(ax)
    np.testing.assert_array_equal(x, traces.value.to_numpy())
    np.testing.assert_array_equal(y, zeta)
    z50, z95 = norm.ppf([0.75, 0.975])
    np.testing.assert_allclose(interval_segments(ax), [[2 - 0.5 * z50, -z50], [2 + 0.5 * z50, z50],
                                                       [2 + 0.5 * z95, z95]], rtol=1e-12)


def test_profile_zeta_into_figure(ri_traces):
    fig = Figure()
    assert plots.profile_zeta(ri_traces, ncols=4, fig=fig) is fig
    assert len(fig.axes) == 4 and fig.axes[0].get_subplotspec().get_geometry()[:2] == (1, 4)
    three = plots.profile_zeta(ri_traces, parm=PROFILE_PARMS[:3], ncols=2)
    assert len(three.axes) == 3  # the fourth cell of the 2 × 2 grid is removed


@pytest.mark.parametrize("source, kwargs, error, match", [
    ("traces", {"parm": "Nope"}, ValueError, r"parm='Nope'.*Nope.*'Days'"),
    ("result", {"parm": ["sigma", "Nope"]}, ValueError, r"\['Nope'\].*sd_\(Intercept\)\|Subject"),
    ("result", {"parm": []}, ValueError, "parm"),
    ("traces", {"levels": 0.0}, ValueError, "levels"),
    ("traces", {"levels": [0.95, 1.0]}, ValueError, "levels"),
    ("traces", {"levels": []}, ValueError, "levels"),
    ("traces", {"ncols": 0}, ValueError, "ncols"),
    ("result", {"npoints": 0}, ValueError, "npoints"),
    ("no_zeta", {}, ValueError, r"columns \['parameter', 'value', 'zeta'\].*missing \['zeta'\]"),
    ("text_zeta", {}, ValueError, "'zeta' must be numeric"),
    ("empty", {}, ValueError, "empty"),
    ("array", {}, TypeError, "LMMResults.*DataFrame.*not ndarray"),
])
def test_profile_zeta_bad_input(ri, ri_traces, source, kwargs, error, match):
    inputs = {"traces": ri_traces, "result": ri, "no_zeta": ri_traces.drop(columns="zeta"),
              "text_zeta": ri_traces.assign(zeta=ri_traces.zeta.astype(str)),
              "empty": ri_traces.iloc[:0], "array": ri_traces[["value", "zeta"]].to_numpy()}
    with pytest.raises(error, match=match):
        plots.profile_zeta(inputs[source], **kwargs)


# --- arguments ---------------------------------------------------------------
@pytest.mark.parametrize("plot", [plots.caterpillar, plots.qq_random_effects])
def test_unknown_group(sleep, plot):
    with pytest.raises(ValueError, match=r"group='Nope'.*\['Subject'\]"):
        plot(sleep, group="Nope")


@pytest.mark.parametrize("kwargs, name", [({"level": 1.0}, "level"), ({"level": 0}, "level"),
                                          ({"max_levels": 0}, "max_levels"),
                                          ({"max_levels": 2.5}, "max_levels")])
def test_caterpillar_bad_arguments(sleep, kwargs, name):
    with pytest.raises(ValueError, match=name):
        plots.caterpillar(sleep, **kwargs)


def test_import_does_not_import_matplotlib():
    code = "import sys, sparselmm, sparselmm.plots; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
