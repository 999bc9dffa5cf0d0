"""The fused GPU K-Means pass (:mod:`bigseg.backend.kernels`).

Its logic runs here under numba's CUDA simulator (threads, blocks, shared memory and
atomics simulated on the CPU, NumPy arrays), in a subprocess because the simulator is
chosen when numba is first imported. On a GPU machine the last test compares the real
kernel with the CuPy array form of the same pass (``pytest -m gpu``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from bigseg import backend
from bigseg.backend import kernels

ROOT = Path(__file__).resolve().parents[1]

CHECK = textwrap.dedent(
    """
    import numpy as np
    import pytest
    from numba.cuda import simulator  # noqa: F401 - fails unless the simulator is on
    from bigseg.backend import kernels
    from bigseg.segment.kmeans import assign_accumulate

    rng = np.random.default_rng(0)
    cases = [
        (9000, 4, 5),   # three blocks of threads, a partial last one
        (700, 7, 1),    # d = 1
        (300, 6, 3),    # a centre far from every row: an empty cluster
        (0, 3, 2),      # no rows
    ]
    for n, k, d in cases:
        X = (rng.normal(size=(n, d)) + rng.integers(0, k, n)[:, None] * 4).astype(np.float32)
        C = (X[:k] if n >= k else rng.normal(size=(k, d))).astype(np.float32)
        if (n, k, d) == (300, 6, 3):
            C[5] = 1e3
        s, c, tot, lab = kernels.launch_lloyd(X, C, np, with_labels=True, inertia=True)
        s2, c2, tot2, lab2 = assign_accumulate(X, C, np, with_labels=True)
        assert (lab == lab2).all(), (n, k, d)
        assert (c == c2).all() and c.dtype == np.int64, (n, k, d, c, c2)
        np.testing.assert_allclose(s, s2, rtol=1e-5, atol=1e-3)
        assert tot == pytest.approx(tot2, rel=1e-5, abs=1e-6), (tot, tot2)
        assert s.shape == (k, d) and s.dtype == np.float64
        s3, c3, tot3, lab3 = kernels.launch_lloyd(X, C, np, with_labels=False, inertia=False)
        assert tot3 is None and lab3 is None and (c3 == c2).all()
        np.testing.assert_allclose(s3, s2, rtol=1e-5, atol=1e-3)
    print("fused kernel ok")
    """
)


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_fused_kernel_matches_the_cpu_pass_under_the_cuda_simulator():
    env = {
        **os.environ,
        "NUMBA_ENABLE_CUDASIM": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    r = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "fused kernel ok" in r.stdout


def test_what_fits_the_kernel():
    assert kernels.fits(8, 16) and kernels.fits(256, 20)
    assert not kernels.fits(8, kernels.MAX_D + 1)  # the row no longer fits the registers
    assert not kernels.fits(1000, 16)  # centres and sums exceed 48 KiB of shared memory
    with pytest.raises(ValueError, match="do not fit"):
        kernels.launch_lloyd(np.zeros((4, 70), np.float32), np.zeros((2, 70)), np)


def test_lloyd_pass_declines_what_does_not_fit_and_remembers_a_failure(monkeypatch, caplog):
    X = np.zeros((10, 80), np.float32)
    assert kernels.lloyd_pass(X, np.zeros((2, 80)), np) is None  # d > MAX_D: caller falls back

    def broken():
        raise RuntimeError("no NVVM")

    monkeypatch.setattr(kernels, "_lloyd_kernel", broken)
    monkeypatch.setattr(kernels, "_broken", [])
    X = np.ones((10, 3), np.float32)
    assert kernels.lloyd_pass(X, np.zeros((2, 3)), np) is None
    assert "no NVVM" in caplog.text and kernels._broken
    assert kernels.lloyd_pass(X, np.zeros((2, 3)), np) is None  # not tried again


def test_the_cupy_array_form_matches_the_cpu_pass():
    """The GPU's fallback (GEMM, argmin, one-hot GEMM, chunk by chunk), run here with
    NumPy standing in for CuPy: any module other than ``numpy`` itself takes that form."""
    from bigseg.segment import kmeans

    xp = types.ModuleType("numpy_as_cupy")
    xp.__dict__.update(np.__dict__)
    rng = np.random.default_rng(2)
    n = 2 * kmeans._CHUNK + 123  # three chunks, the last partial
    X = (rng.normal(size=(n, 5)) + rng.integers(0, 6, n)[:, None] * 3).astype(np.float32)
    C = X[:6].copy()
    s, c, tot, lab = kmeans.assign_accumulate(X, C, xp, with_labels=True, fused=False)
    s2, c2, tot2, lab2 = kmeans.assign_accumulate(X, C, np, with_labels=True)
    assert (lab != lab2).mean() < 1e-4  # GEMM rounding may flip a near-tie
    np.testing.assert_allclose(c, c2, atol=5)
    np.testing.assert_allclose(s, s2, rtol=1e-4, atol=5.0)
    assert tot == pytest.approx(tot2, rel=1e-5)
    s3, c3, tot3, lab3 = kmeans.assign_accumulate(X, C, xp, inertia=False, fused=False)
    assert tot3 is None and lab3 is None and (c3 == c).all()


@pytest.mark.gpu
def test_fused_kernel_matches_the_cupy_form_on_the_gpu():
    if backend.gpu_count() == 0:
        pytest.skip("no CUDA GPU with CuPy here")
    from bigseg.segment.kmeans import assign_accumulate

    be = backend.resolve("gpu")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200_000, 16)) + rng.integers(0, 8, 200_000)[:, None] * 3
    X = be.asarray(X.astype(np.float32))
    C = be.to_numpy(X[:8])
    s, c, tot, lab = assign_accumulate(X, C, be.xp, with_labels=True)
    s2, c2, tot2, lab2 = assign_accumulate(X, C, be.xp, with_labels=True, fused=False)
    assert not kernels._broken, kernels._broken  # the fused kernel really ran
    assert (be.to_numpy(lab) != be.to_numpy(lab2)).mean() < 1e-4  # near-ties may flip
    np.testing.assert_allclose(be.to_numpy(c), be.to_numpy(c2), atol=20)
    np.testing.assert_allclose(be.to_numpy(s), be.to_numpy(s2), rtol=1e-3, atol=1.0)
    assert tot == pytest.approx(tot2, rel=1e-4)
