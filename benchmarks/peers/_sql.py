"""The feature query shared by the DuckDB and Spark peers (the same SQL in both dialects:
only the function that turns a timestamp into epoch microseconds differs).

Tables expected: ``tx`` (customer_id, timestamp, amount, channel, category), optionally
``ev`` (customer_id, timestamp, event_type, page_views), ``cp`` (customer_id, sent_at,
responded, responded_at) and ``cu`` (customer_id, consent_profiling). Feature names and
definitions follow bigseg (:mod:`bigseg.features`); see the peer scripts' docstrings.
"""

from __future__ import annotations

import re

DAY_US = 86_400 * 1_000_000


def _suffix(v: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(v).lower()).strip("_")


def _lit(v: str) -> str:
    return "'" + str(v).replace("'", "''") + "'"


def feature_sql(
    cut: int,
    us: str,
    channels: list[str],
    categories: list[str],
    tables: set[str],
    labels_horizon: int | None = None,
) -> str:
    """One query: a row per customer with a purchase at or before ``cut`` (epoch us).

    ``us`` is the SQL function from a timestamp to epoch microseconds (``epoch_us`` in
    DuckDB, ``unix_micros`` in Spark). With ``labels_horizon`` the churn and value labels
    of ``(cut, cut + horizon]`` are joined as well.
    """
    w90 = cut - 90 * DAY_US
    buy = "amount > 0"
    ch = ",\n".join(
        f"  count(*) FILTER (WHERE {buy} AND channel = {_lit(c)}) AS n_ch_{_suffix(c)}"
        for c in channels
    )
    cat = ",\n".join(
        f"  coalesce(sum(amount) FILTER (WHERE {buy} AND category = {_lit(c)}), 0) "
        f"AS s_cat_{_suffix(c)}"
        for c in categories
    )
    known_ch = " + ".join(f"n_ch_{_suffix(c)}" for c in channels) or "1"
    known_cat = " + ".join(f"s_cat_{_suffix(c)}" for c in categories) or "1"
    shares = [
        f"n_ch_{_suffix(c)} / nullif({known_ch}, 0) AS channel_share_{_suffix(c)}" for c in channels
    ]
    shares += [
        f"s_cat_{_suffix(c)} / nullif({known_cat}, 0) AS category_share_{_suffix(c)}"
        for c in categories
    ]
    ctes = [
        f"""t AS (SELECT customer_id, {us}(timestamp) AS ts, amount, channel, category
  FROM tx WHERE {us}(timestamp) <= {cut})""",
        f"""rfm AS (SELECT customer_id,
  ({cut} - max(ts) FILTER (WHERE {buy})) / {DAY_US}.0 AS recency_days,
  count(*) FILTER (WHERE {buy}) AS frequency,
  sum(amount) AS monetary_total,
  avg(amount) FILTER (WHERE {buy}) AS monetary_mean,
  max(amount) FILTER (WHERE {buy}) AS monetary_max,
  ({cut} - min(ts) FILTER (WHERE {buy})) / {DAY_US}.0 AS tenure_days,
  count(*) FILTER (WHERE NOT ({buy})) AS n_returns,
  count(*) FILTER (WHERE {buy} AND ts > {w90}) AS count_90d,
  coalesce(sum(amount) FILTER (WHERE {buy} AND ts > {w90}), 0) AS spend_90d{"," if ch else ""}
{ch}{"," if cat else ""}
{cat}
  FROM t GROUP BY customer_id HAVING count(*) FILTER (WHERE {buy}) > 0)""",
    ]
    cols = [
        "rfm.customer_id",
        "recency_days",
        "frequency",
        "monetary_total",
        "monetary_mean",
        "monetary_max",
        "tenure_days",
        "frequency / (tenure_days + 30.0) * 365.25 AS purchase_rate",
        "n_returns / frequency AS returns_rate",
        "count_90d",
        "spend_90d",
        *shares,
    ]
    joins = []
    if "ev" in tables:
        ctes.append(f"""e AS (SELECT customer_id,
  count(*) AS events_total,
  ({cut} - max(ts)) / {DAY_US}.0 AS days_since_last_activity,
  count(*) FILTER (WHERE event_type = 'session' AND ts > {w90}) AS sessions_90d,
  count(*) FILTER (WHERE event_type = 'app_open' AND ts > {w90}) AS app_opens_90d,
  coalesce(sum(page_views) FILTER (WHERE ts > {w90}), 0) AS page_views_90d,
  count(DISTINCT floor(ts / {DAY_US})) FILTER (WHERE ts > {w90}) AS active_days_90d
  FROM (SELECT customer_id, {us}(timestamp) AS ts, event_type, page_views FROM ev
        WHERE {us}(timestamp) <= {cut}) ev_cut GROUP BY customer_id)""")
        joins.append("LEFT JOIN e ON e.customer_id = rfm.customer_id")
        cols += ["days_since_last_activity"] + [
            f"coalesce({c}, 0) AS {c}"
            for c in (
                "events_total",
                "sessions_90d",
                "app_opens_90d",
                "page_views_90d",
                "active_days_90d",
            )
        ]
    if "cp" in tables:
        ctes.append(f"""c AS (SELECT customer_id,
  count(*) AS campaign_sends,
  count(*) FILTER (WHERE sent > {w90}) AS campaign_sends_90d,
  count(*) FILTER (WHERE responded AND resp <= {cut}) / count(*) AS campaign_response_rate
  FROM (SELECT customer_id, {us}(sent_at) AS sent, responded, {us}(responded_at) AS resp
        FROM cp WHERE {us}(sent_at) <= {cut}) cp_cut GROUP BY customer_id)""")
        joins.append("LEFT JOIN c ON c.customer_id = rfm.customer_id")
        cols += [
            "coalesce(campaign_sends, 0) AS campaign_sends",
            "coalesce(campaign_sends_90d, 0) AS campaign_sends_90d",
            "campaign_response_rate",
        ]
    where = ""
    if "cu" in tables:
        ctes.append(
            "nc AS (SELECT customer_id AS nc_id FROM cu "
            "WHERE NOT coalesce(consent_profiling, false))"
        )
        joins.append("LEFT JOIN nc ON nc.nc_id = rfm.customer_id")
        where = "WHERE nc.nc_id IS NULL"
    if labels_horizon is not None:
        end = cut + labels_horizon * DAY_US
        ctes.append(f"""lab AS (SELECT customer_id,
  max(CASE WHEN amount > 0 THEN 1 ELSE 0 END) AS bought, sum(amount) AS spend
  FROM tx WHERE {us}(timestamp) > {cut} AND {us}(timestamp) <= {end} GROUP BY customer_id)""")
        joins.append("LEFT JOIN lab ON lab.customer_id = rfm.customer_id")
        cols += [
            "CASE WHEN coalesce(bought, 0) = 1 THEN 0.0 ELSE 1.0 END AS churn",
            "coalesce(spend, 0.0) AS value",
        ]
    return (
        "WITH "
        + ",\n".join(ctes)
        + "\nSELECT "
        + ",\n  ".join(cols)
        + "\nFROM rfm\n"
        + "\n".join(joins)
        + ("\n" + where if where else "")
    )
