"""How much of each cutoff's customers the models train on, known before the features
are computed: the share of an older stacked window's customers whose training rows are
built (:func:`older_share`), and from it the share of the oldest cutoffs' customers
whose features are computed at all (:func:`thin_rates`)."""

from __future__ import annotations

from bigseg.features.bucket import CUTOFFS
from bigseg.features.sample import share_within

#: cutoffs that are only ever an older window of a stack (never a stack's latest, nor
#: the cutoff the backtest judges on): their feature frames hold only the customers
#: some training sample can draw
THINNED = tuple(c for c in CUTOFFS if c.startswith("back") and c != "backtest")


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


def thin_rates(sizes: dict[str, int], cap: int, windows: int) -> dict[str, float]:
    """Per cutoff of :data:`THINNED` whose customers (``sizes``: customers known at each
    cutoff) a share below 1 of covers every training sample: that share, the largest
    :func:`older_share` rate of any stack the cutoff can join (the final models' and
    the backtest's, with any number of usable windows up to ``windows``: which windows
    are usable is learnt from their labels, after the features). Their frames then
    hold the customers whose sampling number lies below it: every row any model draws."""
    names = [c for c in CUTOFFS[1:] if c in sizes]
    need = dict.fromkeys((c for c in names if c in THINNED), 0.0)
    for start in (0, 1):  # the final models' stack, the backtest's
        full = names[start : start + windows]
        for m in range(2, len(full) + 1):
            stack = full[:m]
            rate, _ = older_share(stack, sizes, cap)
            for c in stack[1:]:
                if c in need:
                    need[c] = max(need[c], rate)
    return {c: q for c, q in need.items() if q < 1.0}
