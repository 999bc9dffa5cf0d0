"""How much of each cutoff's customers the models train on, known before the features
are computed: the share of an older stacked window's customers whose training rows are
built (:func:`older_share`), and from it the share of each cutoff's customers whose
features are computed at all (:func:`thin_rates`)."""

from __future__ import annotations

from bigseg.features.bucket import CUTOFFS
from bigseg.features.sample import share_within

#: cutoffs that are only ever an older window of a stack (never a stack's latest, nor
#: the cutoff the backtest judges on): their feature frames hold only the customers
#: some training sample can draw
THINNED = tuple(c for c in CUTOFFS if c.startswith("back") and c != "backtest")
#: the stacks' latest cutoffs: their frames keep at most the backtest's sample of
#: customers (``prediction.max_backtest_rows``), within which every training sample is
#: drawn, so memory stays bounded by the samples however many customers there are
POOLED = ("train", "backtest")


def older_share(stack: list[str], sizes: dict[str, int], cap: int) -> tuple[float, float]:
    """How an older window's customers train: ``(rate, weight)``, the share of its
    customers whose rows are built, and how many customers of the stack the global
    sample is drawn from per built row. The older windows together weigh at most as
    many rows as the latest one (they teach how customers age; the latest window stays
    the one the models fit best), and the global model's cap holds over the whole
    stack: the latest window is sampled at ``r``, the older ones at ``r * share``."""
    older = sum(sizes[c] for c in stack[1:])
    if older == 0:
        return 1.0, 1.0
    share = min(1.0, sizes[stack[0]] / older)
    stacked = sizes[stack[0]] + share * older
    r = share_within(stacked, cap)
    return r * share, 1.0 / r


def thin_rates(sizes: dict[str, int], cap: int, windows: int, pool: int = 0) -> dict[str, float]:
    """Per cutoff, the share of its customers (``sizes``: customers known at each
    cutoff) whose features are computed, where it is below 1; the frames then hold the
    customers whose sampling number lies below it.

    A cutoff of :data:`THINNED` gets the largest :func:`older_share` rate of any stack
    it can join (the final models' and the backtest's, with any number of usable
    windows up to ``windows``: which windows are usable is learnt from their labels,
    after the features): every row any model draws. A cutoff of :data:`POOLED` gets at
    least the share that holds ``pool`` customers (the backtest's sample, which the
    train cutoff is judged on; 0 = all): the global samples (``cap``) and the segments'
    are drawn within it."""
    names = [c for c in CUTOFFS[1:] if c in sizes]
    need = dict.fromkeys((c for c in names if c in THINNED or c in POOLED), 0.0)
    for start in (0, 1):  # the final models' stack, the backtest's
        full = names[start : start + windows]
        for m in range(2, len(full) + 1):
            stack = full[:m]
            rate, _ = older_share(stack, sizes, cap)
            for c in stack[1:]:
                if c in need:
                    need[c] = max(need[c], rate)
    for c in POOLED:
        if c in need:
            need[c] = max(need[c], share_within(sizes[c], pool))
    return {c: q for c, q in need.items() if q < 1.0}
