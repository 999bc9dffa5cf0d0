"""Temporary shim: the names ``bigseg/pipeline.py`` and ``bigseg/tasks.py`` still import
from here. Publishing lives in :mod:`bigseg.io.commit` and :mod:`bigseg.io.resume`.

This module goes when the pipeline package moves to ``bigseg.io`` (issue 16); nothing
else may import it (``tests/test_io_seam.py`` checks that).
"""

from bigseg.io.commit import staged_dir, write_json_atomic, write_text_atomic
from bigseg.io.resume import ResumableStage, dumps_stats, loads_stats

__all__ = [
    "ResumableStage",
    "dumps_stats",
    "loads_stats",
    "staged_dir",
    "write_json_atomic",
    "write_text_atomic",
]
