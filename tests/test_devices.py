"""Every segmentation method (and the preprocessing) on every device: the shared checks of
:mod:`bigseg.testing` for ``device="cpu"`` (always, in CI) and ``device="gpu"`` (marked
``gpu``; skipped where no CUDA GPU with CuPy is present, run on a GPU machine with
``pytest -m gpu tests/test_devices.py``).

The checks fit on in-memory NumPy input; on the GPU the estimators move the blocks to the
device and run the CuPy form of the same kernels."""

from __future__ import annotations

import pytest

from bigseg import backend
from bigseg.segment import METHODS
from bigseg.testing import check_preprocessing, check_segmenter


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request):
    if request.param == "gpu" and backend.gpu_count() == 0:
        pytest.skip("no CUDA GPU with CuPy here")
    return request.param


@pytest.mark.parametrize("method", list(METHODS))
def test_segmentation_method(method, device):
    check_segmenter(method, device)


def test_preprocessing(device):
    check_preprocessing(device)
