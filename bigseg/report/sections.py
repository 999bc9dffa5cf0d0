"""The report's sections, each built from ``metrics.json`` (and the model manifest for
the model card). Every function returns HTML; segments below the privacy threshold are
never passed in (see :func:`bigseg.report.render`).

The segment sections are here; drivers, drift, fairness, migration and the model card
are in :mod:`bigseg.report.model_sections` (importable from here too), the HTML helpers
in :mod:`bigseg.report.markup`."""

from __future__ import annotations

import numpy as np

from bigseg.report import charts
from bigseg.report.charts import colour, figure
from bigseg.report.markup import _e, fmt, label, note, section, table
from bigseg.report.model_sections import (
    _LEVEL,
    MAX_DRIFT_FEATURES,
    drift,
    drivers,
    fairness,
    migration,
    model_card,
)

#: this module's sections, with those defined in :mod:`bigseg.report.markup` and
#: :mod:`bigseg.report.model_sections` (importable from here)
__all__ = [
    "MAX_DRIFT_FEATURES",
    "MAX_PROFILE_FEATURES",
    "_LEVEL",
    "_e",
    "churn_value",
    "dendrogram",
    "drift",
    "drivers",
    "fairness",
    "fmt",
    "label",
    "migration",
    "model_card",
    "note",
    "overview",
    "profile_z",
    "profiles",
    "projection",
    "section",
    "segments",
    "table",
]

MAX_PROFILE_FEATURES = 12


# -- overview and segments --------------------------------------------------------------
def overview(metrics: dict, n_segments: int, hidden: int, min_size: int) -> str:
    quarantine = metrics.get("quarantine") or {}
    n_quarantined = sum(int(n) for reasons in quarantine.values() for n in reasons.values())
    cards = [
        ("customers scored", metrics.get("n_customers")),
        ("excluded (no consent)", metrics.get("excluded_no_consent", 0)),
        ("rows quarantined", n_quarantined),
        ("segments", n_segments),
    ]
    churn = metrics.get("churn") or {}
    if churn.get("auc") is not None:
        cards.append(("churn AUC (backtest)", round(churn["auc"], 3)))
    parts = [
        "<div class='cards'>"
        + "".join(f"<div class='card'><b>{fmt(v)}</b>{_e(k)}</div>" for k, v in cards)
        + "</div>"
    ]
    if quarantine:
        parts.append(
            "<details><summary>quarantined rows by table and reason</summary>"
            + table(
                ["table", "reason", "rows"],
                [[_e(t), _e(r), int(n)] for t, rs in quarantine.items() for r, n in rs.items()],
                left=2,
            )
            + "</details>"
        )
    if hidden:
        parts.append(
            note(
                f"{hidden} segment(s) smaller than {min_size} customers are "
                "suppressed throughout this report (privacy.min_segment_size)."
            )
        )
    return section("overview", "Overview", *parts)


def segments(shown: list[dict]) -> str:
    names = [label(s) for s in shown]
    parts = [
        figure(
            "chart-sizes",
            charts.bar_chart(
                names,
                [s["size"] for s in shown],
                "customers per segment",
                lambda v: f"{v:,.0f}",
                [colour(s["id"]) for s in shown],
            ),
        )
    ]
    rows = []
    for s in shown:
        top = ", ".join(
            f"{t['feature']} {'high' if t['z'] > 0 else 'low'}"
            for t in (s.get("top_features") or [])
        )
        rows.append(
            [
                _e(label(s)),
                s["size"],
                f"{s.get('share', 0):.1%}",
                s.get("churn_probability"),
                s.get("value_prediction"),
                _e(top),
            ]
        )
    parts.append(
        table(
            [
                "segment",
                "customers",
                "share",
                "mean churn probability",
                "mean predicted spend",
                "what sets it apart",
            ],
            rows,
            text=(5,),
        )
    )
    return section("segments", "Segments", *parts)


def profile_z(shown: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Features, raw means (segments x features) and their size-weighted z-scores."""
    feats = list(shown[0]["profile"])
    raw = np.array(
        [
            [s["profile"].get(f) if s["profile"].get(f) is not None else np.nan for f in feats]
            for s in shown
        ],
        dtype=float,
    )
    w = np.array([s["size"] for s in shown], dtype=float)
    ok = np.isfinite(raw)
    wsum = np.maximum((ok * w[:, None]).sum(0), 1e-12)
    mu = np.nansum(raw * w[:, None], axis=0) / wsum
    sd = np.sqrt(np.nansum((raw - mu) ** 2 * w[:, None], axis=0) / wsum)
    return feats, raw, (raw - mu) / np.where(sd > 0, sd, 1)


def profiles(shown: list[dict], descriptions: dict) -> str:
    feats, raw, z = profile_z(shown)
    # |z| >= 0, so NaN as 0 gives nanmax's result, without its warning on a feature
    # missing in every segment
    spread = np.nan_to_num(np.abs(z), nan=0.0).max(axis=0)
    keep = sorted(np.argsort(-spread, kind="stable")[:MAX_PROFILE_FEATURES])
    parts = [
        note(
            "Mean of each feature per segment, in original units; colour shows how "
            "far above (red) or below (blue) the other segments it sits, in standard "
            f"deviations across segments. The {len(keep)} features that differ most "
            "between segments are shown; metrics.json has them all."
        ),
        figure(
            "chart-profile",
            charts.heatmap(
                [label(s) for s in shown], [feats[j] for j in keep], z[:, keep], raw[:, keep]
            ),
        ),
    ]
    if descriptions:
        parts.append(
            "<details><summary>what each feature means</summary>"
            + table(
                ["feature", "meaning"], [[_e(f), _e(d)] for f, d in descriptions.items()], left=2
            )
            + "</details>"
        )
    return section("profiles", "Profiles", *parts)


def projection(proj: dict, shown: list[dict]) -> str:
    ids = {s["id"]: s["name"] for s in shown}
    keep = [i for i, s in enumerate(proj.get("segment") or []) if s in ids]
    if not keep:
        return ""
    x = [proj["x"][i] for i in keep]
    y = [proj["y"][i] for i in keep]
    g = [proj["segment"][i] for i in keep]
    ev = proj.get("explained_variance_ratio") or [0, 0]
    tops = proj.get("axes_top_features") or [[], []]

    def loads(i: int) -> str:
        return ", ".join(f"{_e(t['feature'])} {t['loading']:+.2f}" for t in tops[i])

    svg = charts.scatter(
        x,
        y,
        g,
        {k: v for k, v in ids.items() if k in set(g)},
        f"PC1 ({ev[0]:.0%} of variance)",
        f"PC2 ({ev[1]:.0%} of variance)",
    )
    return section(
        "projection",
        "Segments in two dimensions",
        note(
            f"{len(keep):,} customers drawn at random, placed by a principal-component "
            f"projection of the standardised segmentation features ({_e(', '.join(proj.get('features', [])))}; "
            f"axes fitted on {proj.get('n_fit', 0):,} customers) and coloured by segment. "
            f"Largest loadings: PC1 {loads(0)}; PC2 {loads(1)}."
        ),
        figure("chart-projection", svg),
    )


def dendrogram(metrics: dict, shown: list[dict]) -> str:
    seg_m = metrics.get("segmentation") or {}
    if seg_m.get("dendrogram_svg"):
        return section(
            "dendrogram",
            "Dendrogram",
            note(
                "Ward linkage of the micro-segments (hierarchical segmentation); the dashed cut "
                "gives the segments above."
            ),
            figure("chart-dendrogram", seg_m["dendrogram_svg"]),
        )
    if len(shown) < 2 or not shown[0].get("profile"):
        return ""
    from scipy.cluster.hierarchy import linkage

    _, _, z = profile_z(shown)
    z = np.nan_to_num(z, nan=0.0)
    link = linkage(z, method="average", metric="euclidean")
    return section(
        "dendrogram",
        "Dendrogram",
        note(
            f"How the segments relate ({_e(seg_m.get('method', 'segmentation'))}): average "
            "linkage of the segments' standardised feature means; segments that join low are "
            "alike."
        ),
        figure(
            "chart-dendrogram",
            charts.dendrogram([label(s) for s in shown], link, [colour(s["id"]) for s in shown]),
        ),
    )


def churn_value(shown: list[dict]) -> str:
    names = [label(s) for s in shown]
    cols = [colour(s["id"]) for s in shown]
    parts = []
    if any(s.get("churn_probability") is not None for s in shown):
        parts.append(
            figure(
                "chart-churn",
                charts.bar_chart(
                    names,
                    [s.get("churn_probability") for s in shown],
                    "mean churn probability",
                    lambda v: f"{v:.1%}",
                    cols,
                ),
            )
        )
    if any(s.get("value_prediction") is not None for s in shown):
        parts.append(
            figure(
                "chart-value",
                charts.bar_chart(
                    names,
                    [s.get("value_prediction") for s in shown],
                    "mean predicted spend in the horizon",
                    lambda v: f"{v:,.2f}",
                    cols,
                ),
            )
        )
    return section("churn-value", "Churn and value by segment", *parts) if parts else ""
