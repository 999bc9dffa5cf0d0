"""Shared test bodies, importable by the test suite and by anyone checking an install.

Each check takes the device to run on (``"cpu"`` or ``"gpu"``), so the same assertions
hold everywhere: ``tests/test_devices.py`` runs them on the CPU always and on a CUDA GPU
where one is present. Checks raise ``AssertionError`` and need no pytest.
"""

from bigseg.testing.segment import check_preprocessing, check_segmenter

__all__ = ["check_preprocessing", "check_segmenter"]
