"""Device resolution: auto falls back to CPU and says why; gpu without one is an error."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from bigseg import backend
from bigseg.errors import DeviceError


def test_cpu_is_numpy():
    be = backend.resolve("cpu")
    assert be.xp is np and be.name == "cpu" and be.xgboost_device == "cpu"


def test_auto_falls_back_and_logs_why(monkeypatch, caplog):
    monkeypatch.setattr(backend, "_gpu_probe", lambda: (None, "CuPy is not installed"))
    with caplog.at_level(logging.INFO, logger="bigseg.backend"):
        be = backend.resolve("auto")
    assert be.name == "cpu" and "CuPy is not installed" in be.reason
    assert "CuPy is not installed" in caplog.text


def test_gpu_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(backend, "_gpu_probe", lambda: (None, "CuPy found no CUDA device"))
    with pytest.raises(DeviceError, match="no usable GPU: CuPy found no CUDA device"):
        backend.resolve("gpu")


def test_unknown_device():
    with pytest.raises(DeviceError, match="auto, cpu, gpu"):
        backend.resolve("tpu")


@pytest.mark.gpu
def test_gpu_kernel_matches_cpu():
    cupy = pytest.importorskip("cupy")
    if backend.gpu_count() == 0:
        pytest.skip("no CUDA device")
    from bigseg.segment.kmeans import assign_accumulate

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50_000, 8)).astype(np.float32)
    C = rng.normal(size=(5, 8)).astype(np.float32)
    cpu = assign_accumulate(X, C, np, with_labels=True)
    gpu = assign_accumulate(cupy.asarray(X), C, cupy, with_labels=True)
    assert (cupy.asnumpy(gpu[3]) == cpu[3]).mean() > 0.9999
    np.testing.assert_allclose(cupy.asnumpy(gpu[0]), cpu[0], rtol=1e-4)


def test_no_gpu_imports_outside_backend_and_engine():
    import pathlib
    import re

    root = pathlib.Path(backend.__file__).parents[1]
    bad = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(("backend/", "engine/")):
            continue
        if re.search(r"^\s*(import|from)\s+(cupy|cuml|cudf|dask_cuda)\b", p.read_text(), re.M):
            bad.append(rel)
    assert not bad


def test_preprocessing_on_the_cpu_matches_by_hand():
    import pandas as pd

    from bigseg.segment.preprocess import Preprocessor

    df = pd.DataFrame({"a": [0.0, 9.0, 99.0], "b": [1.0, np.nan, 3.0]})
    p = Preprocessor.fit_moments(["a", "b"], {"a"}, [Preprocessor.moments(df, ["a", "b"], {"a"})])
    z = p.transform(df)
    a = np.log1p(df["a"].to_numpy())
    np.testing.assert_allclose(z[:, 0], (a - a.mean()) / a.std(), rtol=1e-6)
    assert z.dtype == np.float32 and np.isfinite(z).all()  # a missing value scales from 0
    np.testing.assert_allclose(p.inverse_transform(z[[0, 2]])[:, 0], [0.0, 99.0], atol=1e-4)


@pytest.mark.gpu
def test_preprocessing_on_the_gpu_matches_the_cpu():
    cupy = pytest.importorskip("cupy")
    if backend.gpu_count() == 0:
        pytest.skip("no CUDA device")
    import pandas as pd

    from bigseg.segment.preprocess import Preprocessor

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.gamma(2, 10, 10_000), "b": rng.normal(size=10_000)})
    p = Preprocessor.fit_moments(["a", "b"], {"a"}, [Preprocessor.moments(df, ["a", "b"], {"a"})])
    np.testing.assert_allclose(cupy.asnumpy(p.transform(df, cupy)), p.transform(df), rtol=1e-6)
