"""Privacy at the door: consent, PII never stored, keyed pseudonyms, and a scan of every
output file and log line for raw ids, PII values and the key."""

from __future__ import annotations

import glob
import logging

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import bigseg
from bigseg.backend import resolve
from bigseg.config import load_run_config
from bigseg.engine import connect
from bigseg.errors import ConfigError
from bigseg.pipeline import run_stages
from bigseg.privacy import ENV, pseudonymize
from bigseg.testing.outputs import committed

KEY = "correct-horse-battery-staple-0042"
TABLES = ("transactions", "customers", "events", "campaigns", "reviews")


@pytest.fixture(scope="module")
def string_id_data(tmp_path_factory):
    """Synthetic data whose ids are strings 'CUST-000123', so raw ids are findable."""
    from bigseg.synth import generate

    d = tmp_path_factory.mktemp("pii")
    generate(1500, d / "gen", seed=11, chunk_size=1500)
    for t in TABLES:
        for f in glob.glob(str(d / "gen" / "raw" / t / "*.parquet")):
            tab = pq.read_table(f)
            ids = pa.array([f"CUST-{i:06d}" for i in tab.column("customer_id").to_pylist()])
            tab = tab.set_column(tab.column_names.index("customer_id"), "customer_id", ids)
            (d / "raw" / t).mkdir(parents=True, exist_ok=True)
            pq.write_table(tab, d / "raw" / t / "part-0.parquet")
    return d


def _scan(root, needles: list[str]) -> list[str]:
    """Every (file, needle) where a needle occurs in any file under root, Parquet
    contents included."""
    hits = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix == ".parquet":
            text = pq.read_table(p).to_pandas().astype(str).to_csv()
        else:
            text = p.read_bytes().decode("utf-8", errors="replace")
        hits += [f"{p.relative_to(root)}: {n}" for n in needles if n in text]
    return hits


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_pseudonymised_run_leaks_no_id_pii_or_key(
    string_id_data, tmp_path, monkeypatch, caplog, capfd
):
    monkeypatch.setenv(ENV, KEY)
    d = string_id_data
    cfg_path = tmp_path / "job.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "data": {t: {"path": str(d / "raw" / t)} for t in TABLES},
                "privacy": {"pseudonymize": True},
                "segmentation": {"k": 4},
                "prediction": {"n_estimators": 20},
                "validation": {"max_bad_share": 0.05},
                "output": str(tmp_path / "out"),
            }
        )
    )
    cfg = load_run_config(cfg_path)
    customers = pd.read_parquet(d / "raw" / "customers")
    pii = (
        customers["email"].head(50).tolist()
        + customers["phone"].head(50).tolist()
        + customers["name"].head(50).tolist()
    )
    with caplog.at_level(logging.DEBUG), connect(n_workers=2, reuse_current=False) as client:
        run_stages(cfg, client, resolve("cpu"))
    out = tmp_path / "out"
    scores = bigseg.read_scores(out).to_pandas()  # the committed scores
    assert scores["customer_id"].str.fullmatch(r"[0-9a-f]{32}").all()
    # the pseudonym is the keyed HMAC of the raw id
    consenting = customers.loc[customers["consent_profiling"], "customer_id"]
    expected = set(pseudonymize(pa.array(consenting), KEY.encode()).to_pylist())
    assert set(scores["customer_id"]) <= expected
    logs = caplog.text + "".join(capfd.readouterr())
    needles = ["CUST-0", KEY, *pii]
    assert (out / "runs").is_dir() and (out / "_bigseg" / "commits").is_dir()
    assert _scan(out, needles) == []  # every file: runs/, _bigseg/ (commits, records) ...
    assert not [n for n in needles if n in logs]


def test_pseudonymize_without_key_is_a_config_error(
    string_id_data, tmp_path, monkeypatch, local_client
):
    from bigseg.store import ingest

    monkeypatch.delenv(ENV, raising=False)
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {"transactions": {"path": str(string_id_data / "raw" / "transactions")}},
                "privacy": {"pseudonymize": True},
                "output": "out",
            }
        )
    )
    with pytest.raises(ConfigError, match=ENV):
        ingest(load_run_config(tmp_path / "job.yaml"), local_client)
    # nothing committed, no store written anywhere
    out = tmp_path / "out"
    assert not committed(out).committed and not committed(out).has("store")
    assert not list(out.glob("runs/*/store")) and not (out / "store").exists()


def test_plain_hash_would_be_reversible_keyed_is_not():
    import hashlib

    ids = pa.array([f"CUST-{i:06d}" for i in range(1000)])
    plain = {hashlib.sha256(i.encode()).hexdigest()[:32]: i for i in ids.to_pylist()}
    keyed = pseudonymize(ids, KEY.encode()).to_pylist()
    # enumerating the id space reverses a plain hash but finds none of the keyed ones
    assert not set(keyed) & set(plain)
    assert pseudonymize(ids, b"another-key-0123456").to_pylist() != keyed
