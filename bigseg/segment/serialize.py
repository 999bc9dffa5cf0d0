"""Fitted segmenters as safe files (JSON + NumPy arrays), and segment assignment from them.

``segmenter.json`` holds a method's metadata (``method``, ``n_segments``, ...) and
``segmenter.npz`` its arrays, as :meth:`~bigseg.segment.base.Segmenter.export` gives them
(:mod:`bigseg.segment.methods` lists each method's arrays). Segment indices run
``0..n_segments-1``; ``centres`` (one per segment, in the scaled space) serve naming and
matching across re-runs. Arrays are saved with ``np.savez`` and loaded with
``allow_pickle=False``.
"""

from __future__ import annotations

import io

import numpy as np

from bigseg.io.commit import read_bytes, write_bytes_atomic
from bigseg.segment.assign import assign

UNUSUAL = "Unusual customers"


def save(path_npz, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` as an ``.npz`` file at ``path_npz`` (written atomically)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path_npz, buf.getvalue())


def load_arrays(path_npz) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(read_bytes(path_npz)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def segment_counts(block, meta: dict, a: dict[str, np.ndarray], k: int) -> np.ndarray:
    """Customers per segment in one block of the scaled matrix (NumPy or CuPy)."""
    get = getattr(block, "get", None)
    Z = np.asarray(get() if callable(get) else block)
    return np.bincount(assign(meta, a, Z), minlength=k)[:k]
