"""What an ingest records: the store manifest (``store/_manifest.json``) and the
quarantine report of the rows that broke a rule."""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import re
import unicodedata
from collections import Counter, defaultdict

import pyarrow as pa

import bigseg
from bigseg.config import RunConfig
from bigseg.errors import DataError
from bigseg.store import formats
from bigseg.store.store import Store


def mapping_hash(cfg: RunConfig) -> str:
    doc = {t: tc.model_dump(mode="json") for t, tc in cfg.data.tables().items()}
    for d in doc.values():
        # csv.decimal came after stores were built: its default leaves their hash as it
        # was, so an upgrade alone does not rebuild a store
        if d["csv"]["decimal"] == ".":
            del d["csv"]["decimal"]
    doc["_pseudonymize"] = cfg.privacy.pseudonymize
    doc["_validation"] = cfg.validation.model_dump(mode="json")
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def raw_id_type(old: Store | None, split: list[dict]) -> str | None:
    """Type of the customer ids as read, before pseudonymisation (``int64`` or
    ``string``; ``mixed`` when files disagree, None when unknown): ``bigseg erase``
    needs it to turn ids given as text into the values that were pseudonymised."""
    types = {r["raw_id_type"] for r in split if r["raw_id_type"]}
    if old is not None:
        m = old.manifest
        prev = m.get("raw_id_type") or (None if m.get("pseudonymized") else m.get("id_type"))
        if prev is None:  # a store from before this was recorded
            return None
        types.add(prev)
    return types.pop() if len(types) == 1 else ("mixed" if types else None)


def erased_skipped(split: list[dict]) -> dict[str, int]:
    """Rows per table not ingested because their customer was erased."""
    out: Counter = Counter()
    for r in split:
        out[r["table"]] += r["erased_skipped"]
    return {t: n for t, n in out.items() if n}


def schema_of(d: dict) -> pa.Schema:
    return pa.schema([pa.field(n, _parse_type(t)) for n, t in d.items()])


def _parse_type(s: str) -> pa.DataType:
    return {
        "string": pa.string(),
        "int64": pa.int64(),
        "int32": pa.int32(),
        "int16": pa.int16(),
        "int8": pa.int8(),
        "double": pa.float64(),
        "bool": pa.bool_(),
        "timestamp[us]": pa.timestamp("us"),
    }[s]


def quarantine_report(split, merged, jobs, old) -> dict:
    """Per table: good rows this ingest, bad rows by reason, and one example per reason."""
    rep = defaultdict(lambda: {"rows": 0, "bad": Counter(), "examples": {}})
    for r in split:
        e = rep[r["table"]]
        e["rows"] += r["rows"]
        e["bad"].update(r["bad"])
        for reason, ex in r["examples"].items():
            e["examples"].setdefault(reason, ex)
    for (t, _k), (_n, bad, _written) in zip(jobs, merged, strict=True):
        for reason, (n, example) in bad.items():
            rep[t]["bad"][reason] += n
            rep[t]["rows"] -= n  # counted as good by split
            rep[t]["examples"].setdefault(reason, example)
    return {
        t: {"rows": v["rows"], "bad": dict(v["bad"]), "examples": v["examples"]}
        for t, v in rep.items()
    }


#: rule (after "<column>: ") -> how to fix it, for the error of a refused ingest (the
#: first rule the reason starts with)
HINTS = {
    "not a timestamp": (
        "dates must be ISO 8601 (2024-03-01, 2024-03-01T10:00:00+02:00); for another "
        "layout set data.{table}.csv.timestamp_format (e.g. '%d/%m/%Y')"
    ),
    "not a number with a decimal comma": (
        'with data.{table}.csv.decimal: "," numbers need a decimal comma and no ".", '
        "thousands separator or currency sign (12,50); if the column has decimal "
        "points, remove csv.decimal"
    ),
    "not a number": (
        "numbers need a decimal point and no currency sign or thousands separator "
        "(12.50, not '$12.50' or '1,234.50'), or a decimal comma with "
        'data.{table}.csv.decimal: ","; convert the column before ingest'
    ),
    "blank": (
        "a row without a customer id (a guest checkout, a missing value) is never a "
        "customer; give such rows their customer's id in the input if they have one"
    ),
}
#: the example value reads as a number with a decimal comma (12,50; -3,5)
_DECIMAL_COMMA = re.compile(r"\s*[-+]?\d+,\d+\s*")
_DECIMAL_COMMA_FIX = (
    'the value has a decimal comma: set data.{table}.csv.decimal: "," (thousands '
    "separators are not accepted: 1.234,50 must be written 1234,50)"
)
_CURRENCY_FIX = (
    "strip the currency sign or code from the column before ingest ('$12.50' -> "
    "12.50): bigseg does not guess currencies"
)


def _example_value(example: str) -> tuple[str, str] | None:
    """(file, value) of an example of :func:`bigseg.store.split._example`
    (``"<file> row <n>, value '12,50'"``), or None."""
    m = re.fullmatch(r"(.+) row \d+, value (.+)", example or "")
    try:
        v = ast.literal_eval(m.group(2)) if m else None
    except (ValueError, SyntaxError):
        return None
    return (m.group(1), v) if isinstance(v, str) else None


def _number_fixes(file: str, value: str) -> list[str]:
    """The fixes a value that is not a number points to: a currency sign or code to
    strip, a decimal comma to declare (both for '€12,50'; csv.decimal only where the
    file is not Parquet, whose numbers are never parsed from text)."""
    fixes = []
    code = re.compile(r"\b[A-Z]{3}\b")  # ISO 4217: EUR, USD (beside digits: not "TBD")
    sign = any(unicodedata.category(c) == "Sc" for c in value)
    if sign or (code.search(value) and re.search(r"\d", value)):
        fixes.append(_CURRENCY_FIX)
        value = "".join(c for c in code.sub("", value) if unicodedata.category(c) != "Sc")
    if _DECIMAL_COMMA.fullmatch(value) and "parquet" not in formats.by_format([file]):
        fixes.append(_DECIMAL_COMMA_FIX)
    return fixes


def hint(table: str, reason: str, example: str = "") -> str:
    """`` [fix: ...]`` for ``reason`` (a rule of :mod:`bigseg.store.rules`) in ``table``,
    or "". ``example``: where the first such row is, with its value; a value that is
    not a number gets the fix it points to (a decimal comma to declare, a currency
    sign to strip) rather than the general one."""
    rule = reason.partition(": ")[2]
    found = _example_value(example)
    fixes = _number_fixes(*found) if rule == "not a number" and found else []
    h = "; ".join(fixes) or next((v for k, v in HINTS.items() if rule.startswith(k)), None)
    return f" [fix: {h.format(table=table)}]" if h else ""


def _reasons(t: str, v: dict, top: int = 5) -> str:
    """The ``top`` commonest reasons of table ``t``'s report ``v``: count, example, fix."""
    ex = v["examples"]
    return ", ".join(
        f"{r}: {c} (e.g. {ex.get(r, '?')}){hint(t, r, ex.get(r, ''))}"
        for r, c in sorted(v["bad"].items(), key=lambda x: -x[1])[:top]
    )


def quarantined(report: dict, max_share: float) -> list[str]:
    """One line per table of ``report`` with rows quarantined by this ingest (within
    ``validation.max_bad_share``): how many, why, where and the fix, for a warning."""
    lines = []
    for t, v in report.items():
        n_bad = sum(v["bad"].values())
        if n_bad:
            lines.append(
                f"data.{t}: {n_bad} of {v['rows'] + n_bad} rows quarantined, left out of the "
                f"store: {_reasons(t, v)}. They are kept, with _reason, _file and _row, in "
                f"the quarantine dataset under output:; fix them in the input and ingest "
                f"again (more than validation.max_bad_share = {max_share:g} of a table "
                f"refuses the ingest)"
            )
    return lines


def enforce_bad_share(report: dict, max_share: float) -> None:
    problems = []
    for t, v in report.items():
        n_bad = sum(v["bad"].values())
        total = v["rows"] + n_bad
        if total and n_bad / total > max_share:
            problems.append(
                f"{t}: {n_bad} of {total} rows ({n_bad / total:.1%}) break rules, "
                f"more than validation.max_bad_share = {max_share:g}: {_reasons(t, v)}"
            )
    if problems:
        raise DataError("nothing was published:\n  " + "\n  ".join(problems))


def manifest(
    cfg, old, unified, inputs, new, id_types, key_fp, n_buckets, jobs, merged, report
) -> dict:
    counts = defaultdict(int)
    if old is not None:
        for t, v in old.manifest["tables"].items():
            counts[t] = v["rows"]
    for (t, _k), (n, _bad, _written) in zip(jobs, merged, strict=True):
        counts[t] += n
    changed = sorted({k for _t, k in jobs})
    quarantined = defaultdict(Counter)
    if old is not None:
        for t, c in old.manifest.get("quarantine", {}).items():
            quarantined[t].update(c)
    for t, v in report.items():
        quarantined[t].update(v["bad"])
    return {
        "format": 2,
        "bigseg_version": bigseg.__version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "n_buckets": n_buckets,
        "id_type": next(iter(id_types)),
        "pseudonymized": key_fp is not None,
        "key_fingerprint": key_fp,
        "mapping_hash": mapping_hash(cfg),
        "tables": {
            t: {"rows": counts[t], "schema": {f.name: str(f.type) for f in unified[t]}}
            for t in unified
        },
        "quarantine": {t: dict(c) for t, c in quarantined.items() if c},
        "inputs": (old.manifest["inputs"] if old else [])
        + [f.fingerprint() for fs in new.values() for f in fs],
        "last_ingest": {
            "mode": "incremental" if old else "full",
            "new_files": sum(len(fs) for fs in new.values()),
            "changed_buckets": changed,
            "rows": {t: v["rows"] for t, v in report.items()},
            "quarantined": {t: v["bad"] for t, v in report.items() if v["bad"]},
        },
    }
