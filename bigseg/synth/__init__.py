"""Synthetic customer data with planted ground truth.

:func:`generate` writes the five raw input tables of :mod:`bigseg.schema` (customers,
transactions, events, campaigns, reviews) as Parquet, plus a ``ground_truth`` table with
the persona each customer was drawn from and what that customer really did in the
``horizon_days`` after ``end_date``. The raw tables stop at ``end_date`` (23:59:59); the
ground truth is what a churn / value model should predict from them.

Mechanics, per customer (all vectorised per chunk with NumPy):

* a persona (see :data:`PERSONAS`) sets the mean purchase rate, order value, lifetime,
  channel mix, campaign response, review probability and satisfaction;
* the purchase rate gets a gamma-distributed customer multiplier and the order value a
  lognormal customer offset;
* purchases are a Poisson process thinned by weekly and yearly seasonality (November and
  December peak) and, for ``at_risk``, by an exponential decay that starts 6-9 months
  before ``end_date``;
* a latent dropout ("death") time, exponential with a persona-specific mean (BG/NBD
  style), after which the customer never buys again. Churn is therefore visible in
  recency, frequency and trend, as in real data;
* the process runs until ``end_date + horizon_days``; rows after ``end_date`` are not
  written but define ``buys_in_horizon`` and ``spend_in_horizon``.

Each chunk of ``chunk_size`` customers is generated and written by one task with the
RNG ``np.random.default_rng([seed, chunk_index])``, so the output is byte-identical
whatever the number of workers.

Demographic attributes (gender, region) are drawn independently of the persona, so
they carry no churn or value signal; age does, through the persona's ``age_mean``. For
fairness tests, ``generate(..., bias=...)`` plants a real behavioural disparity: a share
``dropout`` of the customers in one gender or region group get an extra dropout time,
uniform in the last ``window_days`` (default 180) before ``end_date`` (not before their
signup), if that is earlier than their own. They truly stop buying, so they churn more
in the ground truth and their recency shows it. The extra draws come from a separate
RNG, ``np.random.default_rng([seed, chunk_index, 1])``; with ``bias=None`` (the default)
nothing changes and the output is byte-identical to a generator without the option.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

# The "X as X" imports re-export names that other modules and tests read from
# bigseg.synth; the parts are modules of this package.
from bigseg.io.commit import remove_tree
from bigseg.synth.arrow import GROUND_TRUTH_SCHEMA, RAW_SCHEMAS
from bigseg.synth.arrow import RAW_TABLES as RAW_TABLES
from bigseg.synth.chunk import _generate_chunk
from bigseg.synth.constants import CATEGORIES as CATEGORIES
from bigseg.synth.constants import CHANNELS as CHANNELS
from bigseg.synth.constants import GENDERS as GENDERS
from bigseg.synth.constants import REGIONS as REGIONS
from bigseg.synth.personas import PERSONA_NAMES as PERSONA_NAMES
from bigseg.synth.personas import PERSONAS, Persona
from bigseg.synth.runner import (
    check_args,
    make_staging,
    publish,
    resolve_client,
    run_chunks,
    summarise,
)

log = logging.getLogger(__name__)

__all__ = ["generate", "PERSONAS", "Persona", "GROUND_TRUTH_SCHEMA", "RAW_SCHEMAS"]


def generate(
    n_customers: int,
    out: str | Path,
    seed: int = 0,
    *,
    client=None,
    chunk_size: int = 50_000,
    end_date: str = "2026-09-30",
    horizon_days: int = 90,
    history_days: int = 1095,
    bias: dict | None = None,
) -> dict:
    """Generate a synthetic customer data set with planted ground truth.

    Writes ``out/raw/<table>/part-NNNNN.parquet`` for the tables ``customers``,
    ``transactions``, ``events``, ``campaigns`` and ``reviews`` (columns and types as in
    :mod:`bigseg.schema`, ``customer_id`` int64) and ``out/ground_truth/part-NNNNN.parquet``
    (``customer_id``, ``persona``, ``buys_in_horizon``, ``spend_in_horizon``,
    ``alive_at_end``). Everything is first written to ``out/.staging-<uuid>`` and renamed
    into place at the end, so a failed run leaves no partial data set.

    Parameters
    ----------
    n_customers : int
        Number of customers; their ids are ``1 .. n_customers`` (int64).
    out : str or Path
        Output directory. ``out/raw`` and ``out/ground_truth`` must not exist or be empty.
    seed : int, default 0
        Random seed. Chunk ``i`` uses ``np.random.default_rng([seed, i])``, so the output
        depends only on ``seed``, ``n_customers``, ``chunk_size`` and the dates, not on
        the number of workers.
    client : distributed.Client, optional
        Dask client to run the chunks on. If None, the active client is used when there
        is one; otherwise chunks run serially in this process. Only small summaries are
        sent back; each task writes its own files, so ``out`` must be on a file system
        that all workers share.
    chunk_size : int, default 50_000
        Customers per task. Memory use is bounded by this.
    end_date : str, default "2026-09-30"
        Last day of the history (inclusive, up to 23:59:59). No raw row is later.
    horizon_days : int, default 90
        Length of the prediction window after ``end_date`` used for the ground truth.
    history_days : int, default 1095
        History window: purchases, events, campaigns and reviews fall in
        ``[end_date - history_days, end_date]``. Signup dates may be older.
    bias : dict, optional
        Plant a churn disparity for fairness tests, e.g.
        ``{"attribute": "gender", "group": "F", "dropout": 0.4}``: each customer of
        that group (``attribute`` is ``"gender"`` or ``"region"``) drops out, with
        probability ``dropout`` (0 .. 1), at a time uniform in the last ``window_days``
        (optional key, default 180, at most ``history_days``) before ``end_date`` and
        not before signup, unless already gone by then. Such customers buy nothing
        after that time, so they churn in the ground truth and look recent-inactive in
        the raw data. Other customers keep their attributes and the distribution of
        their behaviour, not their exact random draws (the shared stream shifts). None
        (the default) leaves the output unchanged, byte for byte.

    Returns
    -------
    dict
        ``n_customers``, ``n_chunks``, ``rows`` (rows per table, ``ground_truth``
        included), ``persona_counts``, ``buys_in_horizon`` (count), ``alive_at_end``
        (count), ``end_date``, ``out``, ``seconds`` and ``bias`` (the normalised
        ``bias`` argument, or None).

    Raises
    ------
    ValueError
        If an argument is out of range, or ``out/raw`` (or ``out/ground_truth``) already
        exists and is not empty: delete it first.
    """
    t0 = time.perf_counter()
    bias = check_args(n_customers, chunk_size, end_date, horizon_days, history_days, bias)
    out = Path(out)
    staging = make_staging(out)
    n_chunks = -(-n_customers // chunk_size)
    starts = [1 + i * chunk_size for i in range(n_chunks)]
    sizes = [min(chunk_size, n_customers - (s - 1)) for s in starts]
    args = (seed, str(staging), end_date, horizon_days, history_days, bias)
    client = resolve_client(client)
    mode = "dask" if client is not None else "in-process"
    log.info("generating %d customers in %d chunks into %s (%s)", n_customers, n_chunks, out, mode)
    try:
        # _generate_chunk is looked up here at call time, so tests can patch it
        summaries = run_chunks(_generate_chunk, client, starts, sizes, args)
        publish(staging, out)
    finally:
        remove_tree(staging, attempts=1)
    seconds = time.perf_counter() - t0
    summary = summarise(summaries, n_customers, end_date, out, seconds, bias)
    log.info("generated %s in %.1f s", summary["rows"], seconds)
    return summary
