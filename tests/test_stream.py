"""Data read in pieces (``sparselmm.stream``): Parquet and CSV files, lists of frames, Dask on the
local scheduler and on a ``distributed`` cluster give the fit of the same rows in one DataFrame,
to 1e-10; bad files are refused by name, before any crossproduct."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import sparselmm
import sparselmm.sources
from sparselmm.errors import DataError, MissingDataWarning, RankDeficiencyWarning

FORMULA = "y ~ x + treat + (1 + x|student) + (1|item) + (1|dept:item)"


def _data(n=6_000, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    student = rng.integers(0, 300, n)
    item = rng.integers(0, 40, n)
    dept = rng.integers(0, 4, n)
    x = rng.normal(size=n)
    treat = rng.choice(["a", "b", "c"], n)
    y = (1 + 0.5 * x + rng.normal(0, 0.7, 300)[student] + 0.3 * rng.normal(size=300)[student] * x
         + rng.normal(0, 0.5, 40)[item] + rng.normal(size=n))
    data = pd.DataFrame({"y": y, "x": x, "treat": treat, "student": [f"s{i:03d}" for i in student],
                         "item": [f"i{i:02d}" for i in item], "dept": [f"d{i}" for i in dept]})
    # levels that first appear in the last rows: a student, an item and a treatment level
    data.loc[n - 30:, "student"] = "s999"
    data.loc[n - 20:, "item"] = "i99"
    data.loc[n - 25:, "treat"] = "z"
    return data


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(scope="module")
def reference(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sparselmm.fit(FORMULA, data)


def _assert_same_fit(result, reference):
    assert result.objective == pytest.approx(reference.objective, rel=1e-10)
    assert result.nobs == reference.nobs
    pd.testing.assert_series_equal(result.fe_params, reference.fe_params, rtol=1e-7, atol=1e-9)
    pd.testing.assert_series_equal(result.theta, reference.theta, rtol=1e-6, atol=1e-8)
    assert [t.group for t in result.model.layout.terms] == [t.group for t in reference.model.layout.terms]
    for a, b in zip(result.model.layout.terms, reference.model.layout.terms):
        pd.testing.assert_index_equal(a.levels, b.levels)
        assert a.columns == b.columns


def _fit(source, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sparselmm.fit(FORMULA, source, **kw)


def _write(data, tmp_path, sizes, fmt="parquet", reorder=False):
    paths, start = [], 0
    for i, size in enumerate(sizes):
        piece = data.iloc[start:start + size]
        start += size
        if reorder and i % 2:
            piece = piece[piece.columns[::-1]]
        path = tmp_path / f"part-{i:03d}.{fmt}"
        piece.to_parquet(path) if fmt == "parquet" else piece.to_csv(path, index=False)
        paths.append(path)
    assert start == len(data)
    return paths


@pytest.mark.parametrize("sizes", [[6_000], [1_000] * 6, [100] * 59 + [100]], ids=["1 file", "6 files", "60 files"])
def test_parquet_files_give_the_in_memory_fit(data, reference, tmp_path, sizes):
    paths = _write(data, tmp_path, sizes, reorder=True)
    _assert_same_fit(_fit(str(tmp_path / "part-*.parquet")), reference)
    _assert_same_fit(_fit([str(p) for p in paths]), reference)


def test_record_batches_of_a_large_file(data, reference, tmp_path, monkeypatch):
    _write(data, tmp_path, [6_000])
    monkeypatch.setattr(sparselmm.sources, "BATCH_ROWS", 700)
    _assert_same_fit(_fit(str(tmp_path / "part-000.parquet")), reference)


def test_csv_files(data, reference, tmp_path):
    _write(data, tmp_path, [2_500, 3_500], fmt="csv", reorder=True)
    _assert_same_fit(_fit(str(tmp_path / "*.csv")), reference)


def test_lists_and_functions_of_frames(data, reference):
    pieces = [data.iloc[i:i + 800] for i in range(0, len(data), 800)]
    _assert_same_fit(_fit(pieces), reference)
    _assert_same_fit(_fit(lambda: (data.iloc[i:i + 1_500] for i in range(0, len(data), 1_500)), reml=True),
                     reference)
    with pytest.raises(DataError, match="read only once"):
        sparselmm.fit(FORMULA, iter(pieces))


def test_ml_and_missing_values_as_in_memory(data):
    holes = data.copy()
    holes.loc[[5, 77, 4_000], "x"] = np.nan
    holes.loc[[9, 5_999], "item"] = None
    with pytest.warns(MissingDataWarning, match="dropped 5 of 6000 rows") as memory_warning:
        memory = sparselmm.fit(FORMULA, holes, reml=False)
    with pytest.warns(MissingDataWarning, match="dropped 5 of 6000 rows") as stream_warning:
        streamed = sparselmm.fit(FORMULA, [holes.iloc[:3_000], holes.iloc[3_000:]], reml=False)
    assert str(stream_warning[0].message) == str(memory_warning[0].message)
    _assert_same_fit(streamed, memory)


def test_aliased_columns_are_dropped_as_in_memory(data):
    aliased = data.assign(x2=2 * data["x"])
    formula = "y ~ x + x2 + (1|student)"
    with pytest.warns(RankDeficiencyWarning, match="'x2'"):
        memory = sparselmm.fit(formula, aliased)
    with pytest.warns(RankDeficiencyWarning, match="'x2'"):
        streamed = sparselmm.fit(formula, [aliased.iloc[:2_000], aliased.iloc[2_000:]])
    _assert_same_fit(streamed, memory)


def test_dask_on_the_local_scheduler(data, reference):
    dd = pytest.importorskip("dask.dataframe")
    _assert_same_fit(_fit(dd.from_pandas(data, npartitions=5)), reference)


def test_dask_on_a_distributed_cluster(data, reference):
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        result = _fit(dd.from_pandas(data, npartitions=4))
        _assert_same_fit(result, reference)
        fitted = result.fittedvalues.compute()  # on the workers: the encoder travels, not the data
    np.testing.assert_allclose(fitted.to_numpy(), reference.fittedvalues.to_numpy(), rtol=1e-7, atol=1e-8)


# --- bad input from files -----------------------------------------------------------------------
def test_a_column_missing_from_one_file(data, tmp_path):
    paths = _write(data, tmp_path, [3_000, 3_000])
    data.iloc[3_000:].drop(columns="dept").to_parquet(paths[1])
    with pytest.raises(DataError, match=r"column 'dept' used in the formula is not in part-001.parquet"):
        sparselmm.fit(FORMULA, str(tmp_path / "*.parquet"))


def test_a_type_change_between_files(data, tmp_path):
    paths = _write(data, tmp_path, [3_000, 3_000])
    data.iloc[3_000:].assign(x=lambda d: d["x"].round(2).astype(str)).to_parquet(paths[1])
    with pytest.raises(DataError, match=r"column 'x' is numeric in part-000.parquet but levels in part-001.parquet"):
        sparselmm.fit(FORMULA, str(tmp_path / "*.parquet"))


def test_an_empty_file(data, tmp_path):
    paths = _write(data, tmp_path, [3_000, 3_000])
    data.iloc[:0].to_parquet(paths[1])
    with pytest.raises(DataError, match="part-001.parquet has no rows"):
        sparselmm.fit(FORMULA, str(tmp_path / "*.parquet"))
    csv = _write(data, tmp_path, [3_000, 3_000], fmt="csv")
    csv[1].write_text("")
    with pytest.raises(DataError, match="cannot read part-001.csv as CSV"):
        sparselmm.fit(FORMULA, [str(p) for p in csv])


def test_an_unreadable_file(data, tmp_path):
    paths = _write(data, tmp_path, [3_000, 3_000])
    paths[1].write_bytes(b"not a parquet file at all")
    with pytest.raises(DataError, match="cannot read part-001.parquet as Parquet"):
        sparselmm.fit(FORMULA, str(tmp_path / "*.parquet"))


def test_bad_values_name_the_piece(data):
    bad = data.copy()
    bad.loc[4_500, "x"] = np.inf
    with pytest.raises(DataError, match=r"piece 1: fixed-effect column 'x' has 1 infinite"):
        sparselmm.fit(FORMULA, [bad.iloc[:3_000], bad.iloc[3_000:]])


def test_no_such_files(tmp_path):
    with pytest.raises(DataError, match="no file matches"):
        sparselmm.fit(FORMULA, str(tmp_path / "*.parquet"))
    with pytest.raises(DataError, match="no such data file"):
        sparselmm.fit(FORMULA, str(tmp_path / "absent.parquet"))
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(DataError, match="Parquet .* or CSV"):
        sparselmm.fit(FORMULA, str(tmp_path / "a.json"))


# --- after the fit: fitted values and residuals, a piece at a time ------------------------------
def test_fitted_values_piece_by_piece_and_to_parquet(data, reference, tmp_path):
    _write(data, tmp_path, [2_000, 4_000])
    result = _fit(str(tmp_path / "part-*.parquet"))
    pieces = list(result.fitted_pieces())
    assert [name for name, _ in pieces] == ["part-000.parquet", "part-001.parquet"]
    fitted = np.concatenate([p["fitted"].to_numpy() for _, p in pieces])
    np.testing.assert_allclose(fitted, reference.fittedvalues.to_numpy(), rtol=1e-7, atol=1e-8)
    resid = np.concatenate([p["resid"].to_numpy() for _, p in pieces])
    np.testing.assert_allclose(resid, reference.resid.to_numpy(), rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="not held in memory; use fitted_pieces"):
        result.fittedvalues
    out = tmp_path / "fitted.parquet"
    assert result.write_fitted(out) == len(data)
    written = pd.read_parquet(out)
    np.testing.assert_allclose(written["fitted"], reference.fittedvalues.to_numpy(), rtol=1e-7, atol=1e-8)


def test_dask_fitted_values_are_lazy(data, reference, tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    result = _fit(dd.from_pandas(data, npartitions=3))
    fitted = result.fittedvalues
    assert isinstance(fitted, dd.Series)
    np.testing.assert_allclose(fitted.compute().to_numpy(), reference.fittedvalues.to_numpy(), rtol=1e-7, atol=1e-8)
    result.write_fitted(tmp_path / "fitted")
    written = pd.read_parquet(tmp_path / "fitted")
    np.testing.assert_allclose(written["resid"], reference.resid.to_numpy(), rtol=1e-6, atol=1e-8)


def test_verbose_reports_the_passes(data, capsys):
    _fit([data.iloc[:3_000], data.iloc[3_000:]], verbose=True)
    err = capsys.readouterr().err
    assert "pass 1 (levels, types, missing values): 6,000 rows in" in err
    assert "pass 2 (crossproducts): 6,000 rows in" in err and "rows/s" in err


def test_summary_of_a_model_read_in_pieces(data, reference):
    """lme4's summary, scaled residuals included (one more pass), as of the same rows in memory."""
    streamed = _fit([data.iloc[:2_500], data.iloc[2_500:]])
    def text(result):  # all but the fit's time
        return [line for line in str(result.summary()).splitlines() if "time" not in line]

    assert text(streamed) == text(reference)
    np.testing.assert_allclose(streamed.scaled_residual_quantiles, reference.scaled_residual_quantiles, rtol=1e-6)


def test_predictions_on_files_a_piece_at_a_time(data, reference, tmp_path):
    new = data.drop(columns="y").iloc[::3]
    _write(new, tmp_path, [1_000, len(new) - 1_000])
    pieces = list(reference.predict_pieces(str(tmp_path / "part-*.parquet")))
    assert [name for name, _ in pieces] == ["part-000.parquet", "part-001.parquet"]
    predicted = pd.concat([p for _, p in pieces])
    pd.testing.assert_series_equal(predicted, reference.predict(new), rtol=1e-12)


def test_inference_on_a_model_read_in_pieces(data, reference):
    """The table's df and the profile need only the crossproducts; the bootstrap and refits by formula
    need rows, and say so."""
    streamed = _fit([data.iloc[:3_000], data.iloc[3_000:]])
    pd.testing.assert_frame_equal(streamed.coef_table(), reference.coef_table(), rtol=1e-5)
    with pytest.raises(ValueError, match="not available for a model read in pieces"):
        streamed.bootstrap(n=2)
    with pytest.raises(ValueError, match="not available for a model read in pieces"):
        streamed.ranova()


def test_data_changed_between_the_passes(data):
    """A value the first pass did not see (a function returning other frames the second time) is an
    error naming the column, not a silently missing level."""
    calls = []

    def pieces():
        calls.append(1)
        second = data.iloc[3_000:].copy()
        if len(calls) > 1:
            second.loc[second.index[0], "treat"] = "new"
        return [data.iloc[:3_000], second]

    with pytest.raises(DataError, match="piece 1: column 'treat' has the value 'new', which the first pass"):
        sparselmm.fit(FORMULA, pieces)


def test_predictions_written_to_parquet(data, reference, tmp_path):
    new = data.drop(columns="y").iloc[:2_500]
    _write(new, tmp_path, [1_000, 1_500])
    assert reference.write_predictions(str(tmp_path / "part-*.parquet"), tmp_path / "predicted.parquet") == 2_500
    written = pd.read_parquet(tmp_path / "predicted.parquet")
    np.testing.assert_allclose(written["predicted"], reference.predict(new).to_numpy(), rtol=1e-12)


def test_missing_values_raise_naming_the_file(data, tmp_path):
    holes = data.copy()
    holes.loc[4_321, "x"] = np.nan
    _write(holes, tmp_path, [3_000, 3_000])
    with pytest.raises(DataError, match=r"missing values in column 'x' \(1 in part-001.parquet\)"):
        sparselmm.fit(FORMULA, str(tmp_path / "*.parquet"), missing="raise")
