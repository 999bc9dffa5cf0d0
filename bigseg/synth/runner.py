"""The steps of :func:`bigseg.synth.generate` around the chunks: checks, staging, running
the chunks in process or on Dask, publishing the result and summing the summaries."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bigseg.io.commit import publish_new_dirs
from bigseg.synth.arrow import RAW_TABLES
from bigseg.synth.bias import _check_bias
from bigseg.synth.personas import PERSONA_NAMES

log = logging.getLogger(__name__)


def check_args(
    n_customers: int,
    chunk_size: int,
    end_date: str,
    horizon_days: int,
    history_days: int,
    bias: dict | None,
) -> dict | None:
    """Raise ValueError on an argument out of range; return the validated ``bias``."""
    if n_customers < 1:
        raise ValueError(f"n_customers must be >= 1, got {n_customers}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if horizon_days < 1 or history_days < 1:
        raise ValueError("horizon_days and history_days must be >= 1")
    np.datetime64(end_date, "D")  # validates the date string
    return _check_bias(bias, history_days)


def _non_empty_dir(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def make_staging(out: Path) -> Path:
    """A fresh ``out/.staging-<uuid>`` with the output folders, once ``out`` is free."""
    for sub in ("raw", "ground_truth"):
        if _non_empty_dir(out / sub):
            raise ValueError(
                f"{out / sub} already exists and is not empty; delete it first "
                "(synth.generate never overwrites a data set)"
            )
    out.mkdir(parents=True, exist_ok=True)
    staging = out.absolute() / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    for sub in [f"raw/{t}" for t in RAW_TABLES] + ["ground_truth"]:
        (staging / sub).mkdir(parents=True)
    return staging


def resolve_client(client):
    """``client``, else the active Dask client, else None (run in this process)."""
    if client is None:
        try:
            from distributed import get_client

            client = get_client()
        except (ValueError, ImportError):
            client = None
    return client


def run_chunks(
    chunk_fn: Callable[..., dict],
    client,
    starts: Sequence[int],
    sizes: Sequence[int],
    args: tuple,
) -> list[dict]:
    """Chunk ``i`` is ``chunk_fn(i, starts[i], sizes[i], *args)``; their summaries in order."""
    n_chunks = len(starts)
    if client is not None:
        n = n_chunks
        futures = client.map(
            chunk_fn,
            list(range(n_chunks)),
            starts,
            sizes,
            *([a] * n for a in args),
            pure=False,
        )
        try:
            return client.gather(futures)
        except Exception:
            # a running chunk cannot be stopped and would go on writing into the staging
            # folder while the caller removes it: every chunk ends before the error rises
            from distributed import wait

            wait(futures)
            raise
        except BaseException:  # interrupted: stop what has not started, at once
            client.cancel(futures)
            raise
    summaries = []
    for i in range(n_chunks):
        summaries.append(chunk_fn(i, starts[i], sizes[i], *args))
        log.debug("chunk %d/%d done", i + 1, n_chunks)
    return summaries


def publish(staging: Path, out: Path) -> None:
    """Publish the staged ``raw`` and ``ground_truth`` into ``out``, both or neither."""
    publish_new_dirs([(staging / sub, out / sub) for sub in ("raw", "ground_truth")])


def summarise(
    summaries: list[dict],
    n_customers: int,
    end_date: str,
    out: Path,
    seconds: float,
    bias: dict | None,
) -> dict:
    """The summary :func:`generate` returns, from the chunks' summaries."""
    rows: dict[str, int] = {}
    for s in summaries:
        for k, v in s["rows"].items():
            rows[k] = rows.get(k, 0) + v
    persona_counts = np.sum([s["persona_counts"] for s in summaries], axis=0)
    return {
        "n_customers": n_customers,
        "n_chunks": len(summaries),
        "rows": rows,
        "persona_counts": dict(zip(PERSONA_NAMES, (int(c) for c in persona_counts), strict=True)),
        "buys_in_horizon": sum(s["buys_in_horizon"] for s in summaries),
        "alive_at_end": sum(s["alive_at_end"] for s in summaries),
        "end_date": str(np.datetime64(end_date, "D")),
        "out": str(out),
        "seconds": round(seconds, 3),
        "bias": bias,
    }
