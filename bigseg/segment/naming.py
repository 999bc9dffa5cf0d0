"""Segment names that state facts about the segment's customers.

A name used to say where a segment's centre sat among the population's percentiles, so
every run had "New customers" and "Loyal customers" whatever the data (on CDNOW at
1998-03-31 the "new" ones were a year old). Now each name is a claim checked against
the segment's facts (:mod:`bigseg.segment.facts`): medians over its customers at
``as_of`` and the churn observed in the last labelled window (customers known at
``as_of - horizon`` who did not buy since). :data:`RULES` is the one table of names,
conditions and thresholds; the first rule whose conditions all hold names the segment,
and when none does the segment is described plainly (:func:`describe`).
docs/segment-names.md shows the same table (:func:`render_table`; a test compares).

Duplicate names get a qualifier (``high spend`` / ``low spend`` / ...).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

#: what each fact is, as the docs and the report say it
FACTS = {
    "median_tenure_days": "median days since the first purchase",
    "median_recency_days": "median days since the last purchase",
    "one_time_share": "share of customers with one purchase",
    "median_spend_per_year": "median spend per year (purchase rate x mean purchase value)",
    "observed_churn": "share of the customers known at as_of - horizon who did not buy since",
    "population_observed_churn": "the same for every customer",
    "population_median_spend_per_year": "the same for every customer",
    "horizon_days": "the prediction horizon",
}
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
#: a name's base is what precedes these (the duplicate and stability qualifiers)
_QUALIFIERS = (" (", " #")


@dataclass(frozen=True)
class Condition:
    """``facts[fact] op value * facts[of]`` (``of`` None: ``value`` itself). A fact
    that is unknown (None: no customer to measure it on) never satisfies it."""

    fact: str
    op: str
    value: float
    of: str | None = None

    def holds(self, facts: dict) -> bool:
        v = facts.get(self.fact)
        ref = 1.0 if self.of is None else facts.get(self.of)
        if v is None or ref is None:
            return False
        return bool(_OPS[self.op](v, self.value * ref))

    def text(self) -> str:
        rhs = f"{self.value:g}" if self.of is None else f"{self.value:g} x {self.of}"
        return f"{self.fact} {self.op} {rhs}"


@dataclass(frozen=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]
    meaning: str

    def holds(self, facts: dict) -> bool:
        return all(c.holds(facts) for c in self.conditions)


def _c(fact: str, op: str, value: float, of: str | None = None) -> Condition:
    return Condition(fact, op, value, of)


H, POP_CHURN, POP_SPEND = (
    "horizon_days",
    "population_observed_churn",
    "population_median_spend_per_year",
)
#: the rules, first match wins. Repeat buyers: fewer than half bought once. "Recent":
#: the median customer bought within one horizon; "lapsed": not within two.
RULES: tuple[Rule, ...] = (
    Rule(
        "Champions",
        (
            _c("median_recency_days", "<=", 1, H),
            _c("one_time_share", "<", 0.5),
            _c("median_spend_per_year", ">=", 1.5, POP_SPEND),
            _c("observed_churn", "<", 1, POP_CHURN),
        ),
        "recent repeat buyers, spending 1.5x the typical customer, churning less than all",
    ),
    Rule(
        "New customers",
        (_c("median_tenure_days", "<", 1, H),),
        "most first bought less than one horizon ago",
    ),
    Rule(
        "Loyal customers",
        (_c("one_time_share", "<", 0.5), _c("observed_churn", "<", 1, POP_CHURN)),
        "repeat buyers who churned less than the population in the last window",
    ),
    Rule(
        "At risk",
        (
            _c("median_recency_days", ">", 1, H),
            _c("one_time_share", "<", 0.5),
            _c("median_spend_per_year", ">=", 1, POP_SPEND),
        ),
        "repeat buyers spending at least the typical customer, no purchase for a horizon",
    ),
    Rule(
        "Big spenders",
        (_c("one_time_share", ">=", 0.5), _c("median_spend_per_year", ">=", 2, POP_SPEND)),
        "mostly one purchase, at twice the typical customer's spend",
    ),
    Rule(
        "Hibernating",
        (_c("median_recency_days", ">", 2, H), _c("one_time_share", "<", 0.5)),
        "repeat buyers with no purchase for two horizons",
    ),
    Rule(
        "Bargain hunters",
        (
            _c("median_recency_days", "<=", 1, H),
            _c("one_time_share", "<", 0.5),
            _c("median_spend_per_year", "<", 0.5, POP_SPEND),
        ),
        "recent repeat buyers spending under half the typical customer",
    ),
    Rule(
        "Promising",
        (_c("median_recency_days", "<=", 1, H), _c("one_time_share", ">=", 0.5)),
        "recent, mostly one purchase so far",
    ),
    Rule(
        "Needs attention",
        (_c("median_recency_days", "<=", 2, H), _c("observed_churn", ">=", 1, POP_CHURN)),
        "bought within two horizons but churned at least as much as the population",
    ),
)
#: the ``name_rule`` of a segment no rule names
DESCRIBED = "described"


def describe(facts: dict) -> str:
    """A plain description from the facts: "{Recent|Lapsing|Lapsed} {one-time|repeat}
    buyers" (recent: median recency within one horizon, lapsing: within two)."""
    r, h = facts.get("median_recency_days"), facts["horizon_days"]
    share = facts.get("one_time_share")
    if r is None or share is None:  # no customer of the segment was sampled
        return "Customers"
    when = "Recent" if r <= h else "Lapsing" if r <= 2 * h else "Lapsed"
    return f"{when} {'one-time' if share >= 0.5 else 'repeat'} buyers"


def base_name(facts: dict) -> tuple[str, str]:
    """``(name, rule)``: the first rule that holds, or the plain description."""
    for rule in RULES:
        if rule.holds(facts):
            return rule.name, rule.name
    return describe(facts), DESCRIBED


def base_of(name: str) -> str:
    """The name without the qualifiers added for uniqueness and stability."""
    for q in _QUALIFIERS:
        name = name.split(q)[0]
    return name


def holds(name: str, facts: dict) -> bool:
    """Whether ``name`` (qualifiers aside) is what the table gives for ``facts``."""
    return base_of(name) == base_name(facts)[0]


#: fact to tell duplicates apart by -> the qualifier of the larger and the smaller
_QUALIFY = {
    "median_spend_per_year": ("high spend", "low spend"),
    "median_tenure_days": ("longer tenure", "shorter tenure"),
    "median_recency_days": ("less recent", "more recent"),
    "one_time_share": ("more one-time", "fewer one-time"),
}


def name_segments(facts: list[dict]) -> tuple[list[str], list[str]]:
    """Unique names for segments with the given facts, and the rule behind each.

    Examples
    --------
    >>> pop = {"horizon_days": 90, "population_observed_churn": 0.5,
    ...        "population_median_spend_per_year": 100.0}
    >>> a = {**pop, "median_tenure_days": 400, "median_recency_days": 20,
    ...      "one_time_share": 0.1, "median_spend_per_year": 300.0, "observed_churn": 0.1}
    >>> b = {**pop, "median_tenure_days": 400, "median_recency_days": 300,
    ...      "one_time_share": 0.9, "median_spend_per_year": 40.0, "observed_churn": 0.9}
    >>> name_segments([a, b])
    (['Champions', 'Lapsed one-time buyers'], ['Champions', 'described'])
    """
    pairs = [base_name(f) for f in facts]
    names, rules = [p[0] for p in pairs], [p[1] for p in pairs]
    for base in set(names):
        idx = [i for i, n in enumerate(names) if n == base]
        if len(idx) < 2:
            continue
        # qualify by the fact on which the duplicates differ most, relative to its size
        dim = max(_QUALIFY, key=lambda d: _spread([facts[i].get(d) for i in idx]))
        order = sorted(idx, key=lambda i: -(facts[i].get(dim) or 0.0))
        for j, i in enumerate(order):
            if len(order) == 2:
                names[i] = f"{base} ({_QUALIFY[dim][j]})"
            else:
                names[i] = f"{base} #{j + 1}"
    return names, rules


def _spread(values: list) -> float:
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    if not np.isfinite(v).any():
        return -1.0
    return float(np.nanmax(v) - np.nanmin(v)) / max(float(np.nanmax(np.abs(v))), 1e-9)


def render_table() -> str:
    """The rule table as Markdown (docs/segment-names.md holds exactly this)."""
    rows = ["| Name | Conditions (all hold; first rule that matches wins) | Meaning |"]
    rows.append("|---|---|---|")
    for r in RULES:
        cond = " and ".join(f"`{c.text()}`" for c in r.conditions)
        rows.append(f"| {r.name} | {cond} | {r.meaning} |")
    return "\n".join(rows) + "\n"
