"""Stable segment ids and names across re-runs.

A re-run (new data, a new model) clusters from scratch; without care segment 3 today
is unrelated to segment 3 yesterday. When a previous model exists, each new centre is
matched to an old one by the Hungarian algorithm on distances between centres, both
expressed in the *new* run's scaled space (old centres are mapped back to original
units with the old preprocessing, then forward with the new one). A matched segment
keeps the old id and name when the centres are close enough; an unmatched or distant
one gets a fresh id (above every id used before) and its own name.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

#: a match farther than this (in standard deviations, RMS over features) is not the same
#: segment any more
MAX_MATCH_DISTANCE = 1.0


def match_segments(
    old_centres_z: np.ndarray,
    new_centres_z: np.ndarray,
    old_ids: list[int],
    max_distance: float = MAX_MATCH_DISTANCE,
) -> tuple[list[int], list[int | None]]:
    """Ids for the new segments, and for each the old id it continues (or None).

    Parameters
    ----------
    old_centres_z, new_centres_z : arrays (k_old, d), (k_new, d) in the same scaled space
    old_ids : the ids of the old segments, in the order of ``old_centres_z``

    Examples
    --------
    >>> old = np.array([[0.0, 0.0], [5.0, 5.0]])
    >>> new = np.array([[5.1, 4.9], [0.1, 0.0], [-9.0, 9.0]])
    >>> match_segments(old, new, [3, 7])
    ([7, 3, 8], [7, 3, None])
    """
    k_new = len(new_centres_z)
    d = np.sqrt(((new_centres_z[:, None, :] - old_centres_z[None, :, :]) ** 2).mean(-1))
    rows, cols = linear_sum_assignment(d)
    cont: list[int | None] = [None] * k_new
    for r, c in zip(rows, cols, strict=True):
        if d[r, c] <= max_distance:
            cont[r] = int(old_ids[c])
    nxt = max(old_ids, default=-1) + 1
    ids = []
    for c in cont:
        if c is None:
            ids.append(nxt)
            nxt += 1
        else:
            ids.append(c)
    return ids, cont


def migration_matrix(pairs: list[dict]) -> dict:
    """Sum per-bucket ``{(old, new): count}`` dicts into ``{"old->new": count}``
    (old is ``"new customer"`` for customers absent from the previous segments)."""
    total: dict = {}
    for p in pairs:
        for key, n in p.items():
            total[key] = total.get(key, 0) + int(n)
    return {f"{o}->{n}": c for (o, n), c in sorted(total.items(), key=lambda kv: str(kv[0]))}
