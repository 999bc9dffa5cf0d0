"""Fitting the configured segmentation method over resident blocks: k chosen (or found
by the method itself), warm-started from the previous model where the method can, and
small segments merged."""

from __future__ import annotations

import logging

import numpy as np

from bigseg.backend import Backend, resolve
from bigseg.segment import choose_k, serialize
from bigseg.segment.base import Segmenter
from bigseg.segment.blocks import Blocks
from bigseg.segment.methods import METHODS

log = logging.getLogger(__name__)


def fit_method(
    cfg,
    seed: int,
    backend: Backend,
    blocks: Blocks,
    Xs: np.ndarray,
    previous_meta: dict | None,
    old_z,
    min_size: int,
):
    """Fit ``cfg.method`` (a ``segmentation`` config) on ``blocks``, scoring candidate
    k on the sample ``Xs``; warm-start from the previous model (``previous_meta``, its
    centres ``old_z`` in this run's scaled space) where the method can; merge segments
    smaller than ``min_size``. Returns the segmenter, the candidate scores, the k rule
    and the merge rounds."""
    method = METHODS[cfg.method]
    if method.finds_k:
        seg = method.from_config(0, cfg, seed, backend).fit(blocks)
        scores, rule = [], method.finds_k
    else:
        seg, scores, rule = choose_k_fit(method, cfg, seed, backend, blocks, Xs)
    if previous_meta is not None:
        seg = seg.warm_start(previous_meta, old_z, blocks)
    if cfg.merge_small_segments:
        seg, merged = merge_small(seg, blocks, min_size)
    else:
        merged = []
    return seg, scores, rule, merged


def merge_small(seg: Segmenter, blocks: Blocks, min_size: int) -> tuple[Segmenter, list[dict]]:
    """Refit with fewer segments while any segment has fewer than ``min_size``
    customers, as the method merges (:meth:`~bigseg.segment.base.Segmenter.without`),
    down to one segment when the data allow no more; methods that do not merge are left
    alone. Returns the segmenter and one record per round. When even one segment holds
    fewer than ``min_size`` customers, a warning says so (the report suppresses it)."""
    merged: list[dict] = []
    if not seg.merges_small or min_size <= 0:
        return seg, merged
    while True:
        meta, arrays = seg.export()
        k = len(arrays["centres"])
        counts = np.sum(blocks.map(serialize.segment_counts, meta, arrays, k), axis=0)
        small = np.flatnonzero(counts < min_size)
        if len(small) and k == 1:
            log.warning(
                "only %d customers: one segment, below privacy.min_segment_size=%d, so "
                "the report suppresses its figures (lower min_segment_size to see them)",
                int(counts.sum()),
                min_size,
            )
        if len(small) == 0 or k == 1:
            return seg, merged
        if k - len(small) < 1:  # every segment is small: as few as the data allow
            small = small[np.argsort(counts[small], kind="stable")][: max(k - 1, 0)]
        merged.append(
            {
                "k": int(k),
                "sizes_below_minimum": counts[small].tolist(),
                "k_after": int(k - len(small)),
            }
        )
        log.info(
            "segments %s have fewer than %d customers (privacy.min_segment_size); "
            "refitting with k=%d",
            small.tolist(),
            min_size,
            k - len(small),
        )
        seg = seg.without(small, blocks)


def choose_k_fit(
    method: type[Segmenter], cfg, seed: int, backend: Backend, blocks: Blocks, Xs: np.ndarray
):
    """Fit every candidate k on all customers and score it on the sample ``Xs``;
    :mod:`bigseg.segment.choose_k` documents the scores and the rule."""
    ks = [cfg.k] if cfg.k != "auto" else list(range(cfg.k_min, cfg.k_max + 1))
    fitted, scores = [], []
    for k in ks:
        seg = method.from_config(k, cfg, seed, backend).fit(blocks)
        fitted.append(seg)
        if len(ks) == 1:
            scores.append({"k": k})
            continue
        meta, arrays = seg.export()
        s = choose_k.cluster_scores(Xs, serialize.assign(meta, arrays, Xs))

        def refit(train, X, i, k=k):
            m, a = method.from_config(k, cfg, seed + 1 + i, resolve("cpu")).fit(train).export()
            return serialize.assign(m, a, X)

        s["stability"] = choose_k.bootstrap_stability(refit, Xs, seed=seed)
        s.update(seg.k_scores(blocks))
        scores.append({"k": k, **s})
        log.info("k=%d: %s", k, {n: round(v, 4) for n, v in s.items()})
    best = choose_k.pick(scores)
    rule = choose_k.RULE if len(ks) > 1 else "fixed k"
    return fitted[best], scores, rule
