"""Customer lifetime value: the BG/NBD purchase model and the Gamma-Gamma spend model.

Written from the papers with NumPy/SciPy (the ``lifetimes`` package is unmaintained):

* BG/NBD: P. S. Fader, B. G. S. Hardie and K. L. Lee (2005), "'Counting Your Customers'
  the Easy Way: An Alternative to the Pareto/NBD Model", *Marketing Science* 24(2),
  275-284: log-likelihood eq. (6), conditional expectation eq. (10); P(alive) from
  Fader, Hardie & Lee (2008), "Computing P(alive) Using the BG/NBD Model" (note).
* Gamma-Gamma: P. S. Fader, B. G. S. Hardie and K. L. Lee (2005), "RFM and CLV: Using
  Iso-Value Curves for Customer Base Analysis", *Journal of Marketing Research* 42(4),
  415-430, and Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value" (note).

Per customer: ``x`` repeat purchases, ``t_x`` time of the last purchase and ``T`` time of
the cutoff, both measured from the first purchase, all in one unit. bigseg uses weeks
(see :func:`rfm_to_bgnbd_inputs`); the fit rescales time internally, so the unit only
changes ``alpha`` (which is in that unit) and the log-likelihood by ``sum(x) * log(unit)``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import digamma, expit, gammaln, hyp2f1

from bigseg.features.clv_kernels import bgnbd_rows

__all__ = [
    "BGNBD",
    "GammaGamma",
    "clv_features",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "rfm_to_bgnbd_inputs",
]

log = logging.getLogger(__name__)

#: bounds on the log-parameters during the fit (keeps exp() finite)
_LOG_BOUND = 15.0


def _arr(name: str, v, n: int | None = None) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{name} is empty: need at least one customer")
    if n is not None and a.size != n:
        raise ValueError(f"{name} has {a.size} values, expected {n}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has NaN or infinite values")
    if np.any(a < 0):
        raise ValueError(f"{name} has negative values (min {a.min():g})")
    return a


def _weights(weights, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = _arr("weights", weights, n)
    if w.sum() <= 0:
        raise ValueError("weights sum to zero")
    return w


def _optimise(fun, theta0: np.ndarray) -> tuple[np.ndarray, bool]:
    """L-BFGS-B with analytic gradients on log-parameters; Nelder-Mead restart if it fails."""
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(theta0)
    opts = {"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9}
    res = minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
    if not res.success:
        log.info("L-BFGS-B did not converge (%s); Nelder-Mead, then polish", res.message)
        nm = minimize(
            lambda t: fun(t)[0],
            res.x,
            method="Nelder-Mead",
            # bounded: on data far from the model's assumptions it never converges, and
            # 4,000 steps over a 50k sample cost 40 s per cutoff (measured)
            options={"maxfev": 300, "xatol": 1e-8, "fatol": 1e-12},
        )
        res = minimize(fun, nm.x, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
    at_bound = np.any(np.abs(res.x) >= _LOG_BOUND - 1e-6)
    if not res.success:
        # L-BFGS-B stops "ABNORMAL" when the line search cannot improve at machine
        # precision, i.e. at the optimum: accept that when the gradient is ~0
        f, g = fun(res.x)
        if np.max(np.abs(g)) <= 1e-6 * max(1.0, abs(f)):
            log.info("CLV fit: %s at a stationary point; accepted", res.message)
            res.success = True
    if at_bound or not res.success:
        # INFO: the fit's ``ok`` is recorded (metrics.json ``clv``) and the run states it
        # once (:func:`bigseg.pipeline.features.compute`)
        log.info(
            "CLV fit: converged=%s, parameter at bound=%s (%s)", res.success, at_bound, res.message
        )
    return res.x, bool(res.success and not at_bound)


def _to_json(model) -> dict:
    d = {k: float(v) for k, v in asdict(model).items() if k != "converged"}
    return {
        **{k: (v if np.isfinite(v) else None) for k, v in d.items()},
        "converged": bool(model.converged),
    }


def _from_json(cls, d: dict, names: tuple[str, ...]):
    ll = d.get("log_likelihood")
    return cls(
        **{k: float(d[k]) for k in names},
        log_likelihood=float("nan") if ll is None else float(ll),
        n=float(d.get("n", 0.0)),
        converged=bool(d.get("converged", True)),
    )


@dataclass(frozen=True)
class BGNBD:
    """Fitted BG/NBD model: purchase rate ~ Gamma(r, alpha), dropout p ~ Beta(a, b).

    ``alpha`` is in the time unit of the data; ``log_likelihood`` is the (weighted) sum of
    eq. (6) over customers in that unit, without the penalty; ``n`` the (weighted) count.
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")
    n: float = 0.0
    converged: bool = True

    def _log_odds_dead(self, x, t_x, T) -> np.ndarray:
        """log( [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x) ), -inf where x == 0."""
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        pos = x > 0
        bx = np.where(pos, self.b + x - 1.0, 1.0)
        lo = (
            np.log(self.a)
            - np.log(bx)
            + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
        )
        return np.where(pos, lo, -np.inf)

    def prob_alive(self, x, t_x, T) -> np.ndarray:
        """P(alive at T | x, t_x, T) (FHL 2008 P(alive) note): ``1 / (1 + [x>0] a/(b+x-1)
        ((alpha+T)/(alpha+t_x))^(r+x))``; 1 when x == 0. Computed as a logistic of the log
        odds, so it is finite (possibly 0) for any x."""
        return expit(-self._log_odds_dead(x, t_x, T))

    def expected_purchases(self, t, x, t_x, T) -> np.ndarray:
        """E[purchases in (T, T+t] | x, t_x, T], eq. (10) of Fader, Hardie & Lee (2005):

        ``(a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)]
        * P(alive)`` with ``z = t/(alpha+T+t)``. Euler's transformation
        ``2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A,C-B;C;z)`` turns the bracketed product into
        ``(1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)``, whose first two arguments do not grow
        with x: no overflow for large x or T. ``a == 1`` (a removable singularity) is
        nudged by 1e-7.
        """
        t, x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (t, x, t_x, T))
        r, alpha, b = self.r, self.alpha, self.b
        a = self.a if abs(self.a - 1.0) > 1e-7 else 1.0 + 1e-7
        one_m_z = (alpha + T) / (alpha + T + t)
        z = t / (alpha + T + t)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            h = one_m_z ** (a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
            e = (a + b + x - 1.0) / (a - 1.0) * (1.0 - h)
        # with a and b huge (data showing almost no dropout) the power underflows while
        # 2F1 overflows; there the model is the gamma-Poisson (NBD) one without dropout,
        # whose posterior mean rate is (r + x) / (alpha + T)
        e = np.where(np.isfinite(e), e, (r + x) / (alpha + T) * t)
        return e * self.prob_alive(x, t_x, T)

    def to_dict(self) -> dict:
        """JSON-safe dict (floats, a bool; None for a NaN log-likelihood)."""
        return _to_json(self)

    @classmethod
    def from_dict(cls, d: dict) -> BGNBD:
        return _from_json(cls, d, ("r", "alpha", "a", "b"))


def _per_x(xu: np.ndarray, inv: np.ndarray):
    """``f(c + x)`` for every row, evaluated once per distinct ``x`` (purchase counts
    take few values): the special functions are most of a likelihood's cost, and the
    values are the same as computed row by row."""
    return lambda f, c: f(c + xu)[inv]


def _bgnbd_nll(theta, xs, t_x, T, w, penalizer):
    """Mean negative log-likelihood (eq. 6 in log-sum-exp form) and its gradient in
    theta; ``xs``: ``(x, distinct x, inverse)``. The pass over the rows is
    :func:`bigseg.features.clv_kernels.bgnbd_rows`."""
    x, xu, inv = xs
    r, alpha, a, b = np.exp(theta)
    per_x = np.stack(
        [gammaln(r + xu), gammaln(b + xu) - gammaln(a + b + xu), digamma(r + xu),
         digamma(a + b + xu), digamma(b + xu)]
    )  # fmt: skip
    s_ll, s_g = bgnbd_rows(x, inv, t_x, T, w, r, alpha, a, b, per_x)
    sw = w.sum()
    const = -gammaln(r) + r * np.log(alpha) + gammaln(a + b) - gammaln(b)
    ll = s_ll + sw * const
    g = s_g + sw * np.array(
        [-digamma(r) + np.log(alpha), r / alpha, digamma(a + b), digamma(a + b) - digamma(b)]
    )
    f = -ll / sw + penalizer * theta @ theta
    grad = -g / sw * np.exp(theta) + 2.0 * penalizer * theta
    return f, grad


def fit_bgnbd(x, t_x, T, weights=None, penalizer: float = 0.0) -> BGNBD:
    """Fit BG/NBD by maximum likelihood, eq. (6) of Fader, Hardie & Lee (2005).

    Parameters
    ----------
    x, t_x, T : array-like of float
        Repeat purchases, time of the last purchase and time of the cutoff (both from the
        first purchase), one unit (weeks recommended). Need ``0 <= t_x <= T``.
    weights : array-like, optional
        Customers per row, to fit on aggregated unique ``(x, t_x, T)`` triples.
    penalizer : float
        Coefficient of an L2 penalty on the log-parameters (``r``, ``a``, ``b`` and
        ``alpha`` in units of the median ``T``), added to the mean negative log-likelihood
        per customer; 0 (default) is plain maximum likelihood.

    Raises
    ------
    ValueError
        Empty input, mismatched lengths, NaN/inf, negative values, or ``t_x > T``.
    """
    x = _arr("x", x)
    t_x, T = _arr("t_x", t_x, x.size), _arr("T", T, x.size)
    if np.any(t_x > T):
        i = int(np.argmax(t_x > T))
        raise ValueError(
            f"t_x > T for {int((t_x > T).sum())} customers "
            f"(first at index {i}: t_x={t_x[i]:g}, T={T[i]:g})"
        )
    w = _weights(weights, x.size)
    scale = float(np.median(T[w > 0])) or float(T.max()) or 1.0
    xs = (x, *np.unique(x, return_inverse=True))
    theta, ok = _optimise(
        lambda th: _bgnbd_nll(th, xs, t_x / scale, T / scale, w, penalizer), np.zeros(4)
    )
    r, alpha_s, a, b = np.exp(theta)
    nll_s, _ = _bgnbd_nll(theta, xs, t_x / scale, T / scale, w, 0.0)
    ll = -nll_s * w.sum() - (w @ x) * np.log(scale)  # back to the caller's time unit
    m = BGNBD(float(r), float(alpha_s * scale), float(a), float(b), float(ll), float(w.sum()), ok)
    log.info(
        "BG/NBD fit on %g customers: r=%.4g alpha=%.4g a=%.4g b=%.4g LL=%.6g",
        m.n,
        m.r,
        m.alpha,
        m.a,
        m.b,
        m.log_likelihood,
    )
    return m


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma spend model: transaction value ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    p: float
    q: float
    v: float
    log_likelihood: float = float("nan")
    n: float = 0.0
    converged: bool = True

    def population_mean(self) -> float:
        """E[transaction value] = p v / (q - 1); NaN (infinite mean) if q <= 1."""
        return self.p * self.v / (self.q - 1.0) if self.q > 1.0 else float("nan")

    def expected_average_value(self, x, m) -> np.ndarray:
        """E[mean transaction value | x, m] (Fader & Hardie 2013 Gamma-Gamma note):

        ``(q-1)/(p x + q-1) * p v/(q-1) + p x/(p x + q-1) * m`` for ``x >= 1``; the
        population mean ``p v/(q-1)`` where ``x == 0`` or ``m`` is not positive/finite.
        """
        x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
        ok = (x >= 1) & np.isfinite(m) & (m > 0)
        px = self.p * np.where(ok, x, 0.0)
        cond = (self.p * self.v + px * np.where(ok, m, 0.0)) / (px + self.q - 1.0)
        return np.where(ok, cond, self.population_mean())

    def to_dict(self) -> dict:
        """JSON-safe dict (floats, a bool; None for a NaN log-likelihood)."""
        return _to_json(self)

    @classmethod
    def from_dict(cls, d: dict) -> GammaGamma:
        return _from_json(cls, d, ("p", "q", "v"))


def _gg_nll(theta, xs, m, w, penalizer):
    """Mean negative Gamma-Gamma log-likelihood of the mean m of x transactions, and its
    gradient: Gamma(px+q)/(Gamma(px)Gamma(q)) v^q m^(px-1) x^px / (v + m x)^(px+q);
    ``xs``: ``(x, distinct x, inverse)``."""
    x, xu, inv = xs
    p, q, v = np.exp(theta)
    px, lvmx, lx = p * x, np.log(v + m * x), np.log(xu)[inv]
    at = _per_x(p * xu, inv)
    gl_pxq, gl_px = at(gammaln, q), gammaln(p * xu)[inv]
    dg_pxq, dg_px = at(digamma, q), digamma(p * xu)[inv]
    ll = (
        gl_pxq
        - gl_px
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * lx
        - (px + q) * lvmx
    )
    g = np.stack(
        [
            x * (dg_pxq - dg_px + np.log(m) + lx - lvmx),
            dg_pxq - digamma(q) + np.log(v) - lvmx,
            q / v - (px + q) / (v + m * x),
        ]
    )
    sw = w.sum()
    f = -(w @ ll) / sw + penalizer * theta @ theta
    return f, -(g @ w) / sw * np.exp(theta) + 2.0 * penalizer * theta


def fit_gamma_gamma(x, m, weights=None, penalizer: float = 0.0) -> GammaGamma:
    """Fit the Gamma-Gamma spend model by maximum likelihood.

    Parameters
    ----------
    x : array-like
        Transactions behind each mean (repeat purchases, as for BG/NBD).
    m : array-like
        Mean value of those transactions. Rows with ``x == 0`` or ``m <= 0`` are ignored.
    weights, penalizer
        As for :func:`fit_bgnbd` (the penalty acts on ``p``, ``q`` and ``v / median(m)``).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    m = np.asarray(m, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("x is empty: need at least one customer")
    if m.size != x.size:
        raise ValueError(f"m has {m.size} values, expected {x.size}")
    w = _weights(weights, x.size)
    if np.any(x < 0) or not np.all(np.isfinite(x)):
        raise ValueError("x must be finite and non-negative")
    keep = (x >= 1) & np.isfinite(m) & (m > 0) & (w > 0)
    if not keep.any():
        raise ValueError("no customers with x >= 1 and m > 0 to fit the Gamma-Gamma model")
    x, m, w = x[keep], m[keep], w[keep]
    scale = float(np.median(m))  # v is in money units: fit in units of the median spend
    xs = (x, *np.unique(x, return_inverse=True))
    theta, ok = _optimise(lambda th: _gg_nll(th, xs, m / scale, w, penalizer), np.zeros(3))
    p, q, v_s = np.exp(theta)
    ll = -_gg_nll(theta, xs, m / scale, w, 0.0)[0] * w.sum() - w.sum() * np.log(scale)
    gg = GammaGamma(float(p), float(q), float(v_s * scale), float(ll), float(w.sum()), ok)
    log.info("Gamma-Gamma fit on %g customers: p=%.4g q=%.4g v=%.4g", gg.n, gg.p, gg.q, gg.v)
    if gg.q <= 1.0:  # stated once per run by the caller; q is in metrics.json ``clv``
        log.info("Gamma-Gamma q=%.3g <= 1: the population mean spend is infinite", gg.q)
    return gg


def clv_features(
    x, t_x, T, m, bgnbd: BGNBD, gg: GammaGamma, horizon: float
) -> dict[str, np.ndarray]:
    """Per-customer CLV features, vectorised.

    ``horizon`` is in the time unit of ``T``. Returns ``clv_prob_alive``,
    ``clv_expected_purchases`` in ``(T, T + horizon]`` (eq. 10), ``clv_expected_aov``
    (Gamma-Gamma conditional mean) and ``clv_expected_value`` = purchases * AOV
    (undiscounted).
    """
    x, t_x, T, m = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T, m))
    purchases = bgnbd.expected_purchases(horizon, x, t_x, T)
    aov = gg.expected_average_value(x, m)
    return {
        "clv_prob_alive": bgnbd.prob_alive(x, t_x, T),
        "clv_expected_purchases": purchases,
        "clv_expected_aov": aov,
        "clv_expected_value": purchases * aov,
    }


def rfm_to_bgnbd_inputs(
    purchase_days, recency_days, tenure_days, days_per_unit: float = 7.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map bigseg RFM features to BG/NBD ``(x, t_x, T)``, in weeks by default.

    BG/NBD counts repeat purchase *occasions*: ``x = purchase_days - 1`` (distinct days
    with a purchase, as the papers and ``lifetimes`` count them; several orders on one
    day are one occasion). ``T = tenure_days`` (days since the first purchase) and
    ``t_x = tenure_days - recency_days`` (first to last purchase), each divided by
    ``days_per_unit`` (7: weeks, as in the CDNOW study; it keeps ``alpha`` and ``T``
    near 1-100 for good conditioning).

    Notes
    -----
    Counting every order row instead inflated ``x`` on CDNOW, where a customer's
    several orders of a day are common, and cost BG/NBD 0.003 of churn AUC at
    1997-09-30 (benchmarks/bench_cdnow_forward.py). For Gamma-Gamma, ``m`` should be
    the mean of *repeat* purchases; bigseg's ``monetary_mean`` includes the first
    purchase, which is a close but not exact stand-in.
    """
    f, rec, ten = (
        np.asarray(v, dtype=np.float64) for v in (purchase_days, recency_days, tenure_days)
    )
    T = np.maximum(ten, 0.0) / days_per_unit
    x = np.maximum(f - 1.0, 0.0)
    t_x = np.where(x > 0, np.clip(ten - rec, 0.0, None) / days_per_unit, 0.0)
    return x, np.minimum(t_x, T), T
