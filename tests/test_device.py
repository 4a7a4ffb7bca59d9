"""The blocked backend with its dense block on a device (``backends.gpu``).

On every machine ``DeviceBlockedBackend`` runs on ``NumpyOps`` (the device's primitives in numpy)
against the CPU's ``BlockedBackend`` on the same crossproducts: objective, gradient, level-block
sums, conditional variances, solutions, EM steps and whole fits, on scalar and vector first and
trailing terms, weights and a boundary θ; and the choice of device (errors without CuPy, "auto").
The tests marked ``gpu`` run the same checks on ``CudaOps`` where CuPy finds a GPU (designs up to
5,000 wide: objective and gradient to 1e-9), and are skipped elsewhere.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

import sparselmm
from sparselmm import DeviceError
from sparselmm.backends import BlockedBackend, DeviceBlockedBackend, gpu
from sparselmm.backends.cuda import gpu_available
from sparselmm.backends.gpu import NumpyOps
from sparselmm.datasets import load_insteval, simulate_ratings

HAS_GPU = gpu_available()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")


def _ratings(n, users, items, seed, slope=False, weights=False):
    data = simulate_ratings(n, users, items, seed=seed)
    rng = np.random.default_rng(seed)
    if slope:
        data["x"] = rng.normal(size=len(data))
    if weights:
        data["w"] = rng.uniform(0.5, 2.0, size=len(data))
    return data


DESIGNS = {  # formula, data: scalar and vector terms first and last, prior weights
    "scalar": ("rating ~ 1 + (1|user) + (1|item)", lambda: _ratings(20_000, 1_500, 400, 1)),
    "vector first": ("rating ~ x + (1 + x|user) + (1|item)", lambda: _ratings(20_000, 1_500, 300, 2, slope=True)),
    "vector last": ("rating ~ 1 + (1|user) + (1 + x|item)", lambda: _ratings(20_000, 1_500, 200, 3, slope=True)),
    "weighted": ("rating ~ 1 + (1|user) + (1|item)", lambda: _ratings(20_000, 1_500, 300, 4, weights=True)),
}


def _model(name, reml):
    formula, data = DESIGNS[name]
    frame = data()
    return sparselmm.LinearMixedModel(formula, frame, reml=reml, backend="blocked",
                                      weights="w" if "w" in frame else None)


def _pair(model, ops):
    return model.backend, DeviceBlockedBackend(model.layout, model.crossprod, model.reml, ops=ops)


def assert_backends_agree(cpu, dev, thetas, rtol=1e-10):
    for theta in thetas:
        f = cpu.objective(theta)
        assert dev.objective(theta) == pytest.approx(f, rel=rtol)
        g = cpu.gradient(theta)
        assert np.linalg.norm(dev.gradient(theta) - g) <= rtol * max(np.linalg.norm(g), 1.0)
        for a, b in zip(dev.level_block_sums(theta), cpu.level_block_sums(theta)):
            np.testing.assert_allclose(a, b, rtol=rtol)
        s, t = cpu.solution(theta), dev.solution(theta)
        np.testing.assert_allclose(t.beta, s.beta, rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(t.u, s.u, rtol=rtol, atol=1e-10)
        np.testing.assert_allclose(dev.em_step(theta), cpu.em_step(theta), rtol=rtol)


def _cuda_ops():
    from sparselmm.backends.cuda import CudaOps

    return CudaOps()


OPS = [pytest.param(NumpyOps, 1e-10, id="numpy"),
       pytest.param(_cuda_ops, 1e-9, id="cuda", marks=[pytest.mark.gpu, needs_gpu])]


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("name", list(DESIGNS))
@pytest.mark.parametrize("ops,rtol", OPS)
def test_device_matches_cpu(name, reml, ops, rtol):
    model = _model(name, reml)
    cpu, dev = _pair(model, ops())
    rng = np.random.default_rng(len(name))
    thetas = [model.theta0, rng.uniform(0.2, 1.5, model.layout.ntheta)]
    assert_backends_agree(cpu, dev, thetas, rtol)
    for a, b in zip(dev.cond_var(thetas[1]), cpu.cond_var(thetas[1])):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-14)
    ZtZ = model.crossprod.ZtZ.tocoo()  # A⁻¹ on all of Z'Z's pattern: S⁻¹ and the first term's columns
    np.testing.assert_allclose(dev.inverse_gather(thetas[1])(ZtZ.row, ZtZ.col),
                               cpu.inverse_gather(thetas[1])(ZtZ.row, ZtZ.col), rtol=1e-9, atol=1e-14)
    assert dev._Z22 is None  # none of it through a host copy of S⁻¹


def test_numpy_device_boundary_and_dense_inverse():
    """A singular T (the traces' general form reads A⁻¹ on Z'Z's pattern) and the dense A⁻¹."""
    model = _model("vector last", reml=True)
    cpu, dev = _pair(model, NumpyOps())
    theta = np.array([0.8, 0.6, 0.3, 0.0])  # the item slope's variance on the boundary
    assert dev.objective(theta) == pytest.approx(cpu.objective(theta), rel=1e-12)
    np.testing.assert_allclose(dev.gradient(theta), cpu.gradient(theta), rtol=1e-10, atol=1e-8)
    assert dev._Z22 is None  # the traces' general form read A⁻¹ on the device
    np.testing.assert_allclose(dev.dense_inverse(theta), cpu.dense_inverse(theta), rtol=1e-10, atol=1e-14)


def test_numpy_device_fit_matches_cpu():
    """A whole fit (EM, Newton, the last gradient) on the device's path: the CPU's optimum."""
    data = load_insteval()
    formula = "y ~ 1 + service + (1|s) + (1|d) + (1|dept)"
    want = sparselmm.fit(formula, data, reml=False, backend="blocked")
    model = sparselmm.LinearMixedModel(formula, data, reml=False, backend="blocked")
    model.backend = DeviceBlockedBackend(model.layout, model.crossprod, False, ops=NumpyOps())
    got = model.fit()
    assert got.objective == pytest.approx(want.objective, rel=1e-12)
    np.testing.assert_allclose(got.theta, want.theta, rtol=1e-8)
    np.testing.assert_allclose(got.fe_params, want.fe_params, rtol=1e-9)
    assert "device" in model.backend.describe()


def test_one_term_has_no_dense_block():
    """A single term (m = 0): the device has nothing to hold, and the fit is the CPU's."""
    data = sparselmm.datasets.simulate_nested(3_000, seed=1)
    model = sparselmm.LinearMixedModel(sparselmm.datasets.NESTED_FORMULA, data, backend="blocked")
    dev = DeviceBlockedBackend(model.layout, model.crossprod, True, ops=NumpyOps())
    assert dev._m == 0
    assert_backends_agree(model.backend, dev, [model.theta0, np.array([0.9, 0.1, 0.3])])


def test_square_is_a_view():
    S, flat = NumpyOps().square(5)
    flat[7] = 3.0  # row 2, column 1 in column-major order
    assert S[2, 1] == 3.0 and S.flags.f_contiguous


# --- the choice of device ------------------------------------------------------------------------

def _small():
    return simulate_ratings(3_000, 200, 50, seed=0)


def test_bad_device_names_the_choices():
    data = _small()
    before = data.copy()
    with pytest.raises(ValueError, match="device must be one of"):
        sparselmm.fit("rating ~ 1 + (1|user) + (1|item)", data, device="gpu")
    with pytest.raises(ValueError, match="runs the blocked backend"):
        sparselmm.fit("rating ~ 1 + (1|user) + (1|item)", data, device="cuda", backend="sparse")
    pd.testing.assert_frame_equal(data, before)


@pytest.mark.skipif(HAS_GPU, reason="a GPU is here")
def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    """Raised before the crossproducts; the CPU path ("cpu", "auto") fits as before."""
    from sparselmm import crossprod

    def fail(*args, **kwargs):
        raise AssertionError("the crossproducts were computed before the device was checked")

    monkeypatch.setattr(crossprod, "crossproducts", fail)
    with pytest.raises(DeviceError, match="CuPy|CUDA"):
        sparselmm.fit("rating ~ 1 + (1|user) + (1|item)", _small(), device="cuda")


@pytest.mark.skipif(HAS_GPU, reason="a GPU is here")
def test_command_line_device_without_a_gpu(tmp_path, capsys):
    from sparselmm.cli import main

    path = tmp_path / "ratings.csv"
    _small().to_csv(path, index=False)
    assert main(["fit", str(path), "rating ~ 1 + (1|user) + (1|item)", "--quiet", "--device", "cuda"]) == 2
    assert "device='cuda'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", str(path), "rating ~ 1 + (1|user) + (1|item)", "--device", "gpu"])


@pytest.mark.skipif(HAS_GPU, reason="a GPU is here")
def test_auto_without_a_gpu_is_the_cpu():
    model = sparselmm.LinearMixedModel("rating ~ 1 + (1|user) + (1|item)", _small(), device="auto")
    assert not isinstance(model.backend, DeviceBlockedBackend)
    assert model.backend.name == "blocked"


def test_auto_takes_a_large_dense_block(monkeypatch):
    """With a GPU (stood in for by NumpyOps): a dense block from GPU_MIN_ORDER goes on it, a
    smaller one and a nested design stay on the CPU."""
    from sparselmm.backends import cuda

    monkeypatch.setattr(cuda, "gpu_available", lambda: True)
    monkeypatch.setattr(gpu, "cuda_ops", NumpyOps)
    import sparselmm.backends as backends

    monkeypatch.setattr(backends, "cuda_ops", NumpyOps)
    data = load_insteval()
    formula = "y ~ 1 + service + (1|s) + (1|d) + (1|dept)"  # a dense block of order 1,142
    m = sparselmm.LinearMixedModel(formula, data, reml=False, device="auto").backend
    assert isinstance(m, BlockedBackend) and not isinstance(m, DeviceBlockedBackend)
    monkeypatch.setattr(gpu, "GPU_MIN_ORDER", 1_000)
    m = sparselmm.LinearMixedModel(formula, data, reml=False, device="auto").backend
    assert isinstance(m, DeviceBlockedBackend)
    pieces = sparselmm.LinearMixedModel(formula, [data.iloc[:40_000], data.iloc[40_000:]], reml=False,
                                        device="auto")  # read in pieces: the same device
    assert isinstance(pieces.backend, DeviceBlockedBackend)
    assert pieces.objective(pieces.theta0) == pytest.approx(m.objective(pieces.theta0), rel=1e-10)
    nested = sparselmm.datasets.simulate_nested(2_000, seed=0)
    m = sparselmm.LinearMixedModel(sparselmm.datasets.NESTED_FORMULA, nested, device="auto").backend
    assert m.name == "dense"


def test_auto_falls_back_to_the_cpu_when_the_gpu_fails(monkeypatch):
    from sparselmm.backends import cuda

    def broken():
        raise RuntimeError("NVRTC could not compile")

    monkeypatch.setattr(cuda, "gpu_available", lambda: True)
    monkeypatch.setattr(sparselmm.backends, "cuda_ops", broken)
    monkeypatch.setattr(gpu, "GPU_MIN_ORDER", 100)
    formula, data = DESIGNS["scalar"]
    with pytest.warns(RuntimeWarning, match="NVRTC could not compile"):
        model = sparselmm.LinearMixedModel(formula, data(), reml=False, device="auto")
    assert type(model.backend) is BlockedBackend
    monkeypatch.setattr(sparselmm.backends, "cuda_ops", NumpyOps)  # a GPU without the room: the CPU too
    monkeypatch.setattr(NumpyOps, "free_memory", lambda self: 1e5)
    with pytest.warns(RuntimeWarning, match="more than the 0.00 GiB allowed"):
        model = sparselmm.LinearMixedModel(formula, data(), reml=False, device="auto")
    assert type(model.backend) is BlockedBackend


def test_device_memory_is_checked_first():
    from sparselmm.errors import ModelSizeError

    model = _model("scalar", reml=False)
    with pytest.raises(ModelSizeError, match="on the cpu device"):
        DeviceBlockedBackend(model.layout, model.crossprod, False, max_memory=1e5, ops=NumpyOps())


# --- on a GPU --------------------------------------------------------------------------------------

@pytest.mark.gpu
@needs_gpu
def test_cuda_5000_wide_and_fit():
    """A dense block of order 5,000: objective and gradient to 1e-9, and a whole fit via device='cuda'."""
    data = simulate_ratings(300_000, 4_000, 5_000, seed=5)
    formula = "rating ~ 1 + (1|user) + (1|item)"
    model = sparselmm.LinearMixedModel(formula, data, reml=False, backend="blocked")
    cpu, dev = _pair(model, _cuda_ops())
    assert dev._m == 5_000
    for theta in (model.theta0, np.array([0.6, 0.5])):
        assert dev.objective(theta) == pytest.approx(cpu.objective(theta), rel=1e-9)
        g = cpu.gradient(theta)
        assert np.linalg.norm(dev.gradient(theta) - g) <= 1e-9 * np.linalg.norm(g)
    want = model.fit()
    got = sparselmm.fit(formula, data, reml=False, device="cuda")
    assert isinstance(got.model.backend, DeviceBlockedBackend)
    assert got.objective == pytest.approx(want.objective, rel=1e-10)
    np.testing.assert_allclose(got.theta, want.theta, rtol=1e-6)


@pytest.mark.gpu
@needs_gpu
def test_cuda_primitives_match_numpy():
    ops, ref = _cuda_ops(), NumpyOps()
    rng = np.random.default_rng(7)
    m = 700
    G = rng.standard_normal((m, m))
    A = np.asfortranarray(G @ G.T + m * np.eye(m))
    L, Lf = ops.square(m)
    Lf[...] = ops.to_device(A.reshape(-1, order="F"))
    ops.potrf(L)
    want = A.copy(order="F")
    ref.potrf(want)
    low = np.tril_indices(m)
    np.testing.assert_allclose(ops.to_host(L)[low], want[low], rtol=1e-12, atol=1e-12)
    for via in ("potri", "trtri"):  # the second is the way of blocks of 2³¹ entries or more
        inv, _ = ops.square(m)
        ops.potri(L, inv, via=via)
        np.testing.assert_allclose(ops.to_host(inv)[low], np.linalg.inv(A)[low], rtol=1e-9, atol=1e-15, err_msg=via)
    B = rng.standard_normal((m, 3))
    for trans in (False, True):
        np.testing.assert_allclose(ops.to_host(ops.solve(L, ops.to_device(B), trans)), ref.solve(want, B, trans),
                                   rtol=1e-10, atol=1e-12)


def test_verbose_names_the_device(monkeypatch, capsys):
    """verbose=True: the device and its memory, no time estimated from the CPU's rate."""
    from sparselmm.backends import cuda

    monkeypatch.setattr(cuda, "gpu_available", lambda: True)
    monkeypatch.setattr(sparselmm.backends, "cuda_ops", NumpyOps)
    monkeypatch.setattr(gpu, "GPU_MIN_ORDER", 100)
    formula, data = DESIGNS["scalar"]
    model = sparselmm.LinearMixedModel(formula, data(), reml=False, device="auto", verbose=True, max_memory=2**31)
    assert isinstance(model.backend, DeviceBlockedBackend)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("sparselmm: blocked backend: user eliminated, a dense block of order 400 on the cpu "
                           "device: about ")
    assert line.endswith(" of the 2.0 GiB allowed")
