"""The campaigns table: monthly sends to consenting customers, responses, conversions.

A conversion is a purchase shortly after the response, only by a customer still alive;
:func:`campaigns_table` hands those purchases on to the transactions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from bigseg.synth.arrow import RAW_SCHEMAS, _take, _ts
from bigseg.synth.constants import (
    CAMPAIGN_CHANNEL_P,
    CAMPAIGN_CHANNELS,
    CAMPAIGN_HOUR,
    CAMPAIGN_SEND_PROB,
    DAY_S,
)
from bigseg.synth.state import Frame, Latent


def _sends(
    rng: np.random.Generator, f: Frame, signup_sec: np.ndarray, consent_marketing: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Campaign months, and owner, month index, channel and time of each send."""
    months = np.arange(
        f.start_day.astype("datetime64[M]"), f.end_day.astype("datetime64[M]") + 1
    )  # campaign months
    n_months = months.size
    send_day = (months.astype("datetime64[D]") + np.timedelta64(4, "D") - f.start_day).astype(
        np.int64
    )
    send = consent_marketing[:, None] & (rng.random((f.n, n_months)) < CAMPAIGN_SEND_PROB)
    c_owner, c_month = np.nonzero(send)
    c_chan = np.searchsorted(
        np.cumsum(CAMPAIGN_CHANNEL_P), rng.random(c_owner.size), side="right"
    ).clip(0, 2)
    c_sec = send_day[c_month] * DAY_S + CAMPAIGN_HOUR[c_chan] * 3600
    ok = (c_sec >= 0) & (c_sec <= f.end_s) & (c_sec >= signup_sec[c_owner])
    return months, c_owner[ok], c_month[ok], c_chan[ok], c_sec[ok]


def _responses(
    rng: np.random.Generator, f: Frame, lat: Latent, c_owner: np.ndarray, c_sec: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Per send: responded, response time, conversion time, converted."""
    end_s, death, tau = f.end_s, lat.death, lat.tau
    c_alive = death[c_owner] * DAY_S > c_sec
    c_engaged = np.exp(-np.maximum(c_sec / DAY_S - tau[c_owner], 0.0) / lat.decay_scale[c_owner])
    p_resp = f.p("campaign_response")[c_owner] * np.where(c_alive, c_engaged, 0.1)
    responded = rng.random(c_owner.size) < p_resp
    r_sec = c_sec + np.maximum(60, rng.exponential(0.4 * DAY_S, c_owner.size)).astype(np.int64)
    responded &= r_sec <= end_s
    # a conversion is a purchase shortly after the response, only by a customer still alive
    conv_sec_all = r_sec + rng.exponential(2 * 3600, c_owner.size).astype(np.int64)
    converted = (
        responded
        & (death[c_owner] * DAY_S > conv_sec_all)
        & (rng.random(c_owner.size) < f.p("campaign_conversion")[c_owner])
    )
    return responded, r_sec, conv_sec_all, converted


def campaigns_table(
    rng: np.random.Generator, f: Frame, lat: Latent, consent_marketing: np.ndarray
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The campaigns table, and owner and time of each conversion purchase."""
    months, c_owner, c_month, c_chan, c_sec = _sends(rng, f, lat.signup_sec, consent_marketing)
    responded, r_sec, conv_sec_all, converted = _responses(rng, f, lat, c_owner, c_sec)
    campaign_ids = np.char.add("C", np.datetime_as_string(months))
    campaigns = pa.Table.from_arrays(
        [
            pa.array(f.ids[c_owner]),
            _take(list(campaign_ids), c_month),
            _ts(f.start_us, c_sec),
            _take(CAMPAIGN_CHANNELS, c_chan),
            pa.array(responded),
            pa.array(converted),
            _ts(f.start_us, r_sec, mask=~responded),
        ],
        schema=RAW_SCHEMAS["campaigns"],
    )
    conv = np.nonzero(converted)[0]
    return campaigns, c_owner[conv], conv_sec_all[conv]
