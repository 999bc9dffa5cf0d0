"""The data every suite runs on: generated once (as ``bigseg generate`` does), reused when
``--data`` already holds the same size and seed, and the run config bigseg uses on it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from bigseg.config import RunConfig, load_run_config
from bigseg.io.commit import remove_tree, write_text_atomic

TABLES = ("transactions", "customers", "events", "campaigns", "reviews")
MARKER = "_benchmark.json"


def prepare_data(customers: int, data: str | Path, seed: int = 0, client=None) -> dict:
    """Synthetic raw tables for ``customers`` under ``data/raw`` (generated unless the
    marker says this size and seed are already there). Returns the generator's summary
    with ``generate_s`` (0 when reused) and ``reused``."""
    from bigseg.synth import generate

    data = Path(data)
    marker = data / "raw" / MARKER
    want = {"customers": customers, "seed": seed}
    if marker.is_file():
        summary = json.loads(marker.read_text())
        if {k: summary.get(k) for k in want} == want:
            return {**summary, "generate_s": 0.0, "reused": True}
    for d in ("raw", "ground_truth"):
        remove_tree(data / d, attempts=1)
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = generate(customers, data, seed=seed, client=client)
    gen_s = round(time.perf_counter() - t0, 3)
    summary = {**json.loads(json.dumps(summary, default=str)), **want, "generate_s": gen_s}
    write_text_atomic(marker, json.dumps(summary, indent=1))
    return {**summary, "reused": False}


def job_config(
    data: str | Path,
    output: str | Path,
    as_of: str,
    *,
    seed: int = 0,
    k: int = 7,
    targets=("churn", "value"),
    horizon_days: int = 90,
) -> RunConfig:
    """The run config bigseg is benchmarked with: every generated table, ``as_of`` fixed
    (the peers get the same date), k fixed (the peers fit the same k), the targets the
    peers also predict; everything else bigseg's defaults. Written to
    ``output/../<name>.yaml`` and loaded like a user's config."""
    data, output = Path(data).resolve(), Path(output).resolve()
    doc = {
        "data": {t: {"path": str(data / "raw" / t)} for t in TABLES if (data / "raw" / t).exists()},
        "as_of": as_of,
        "horizon_days": horizon_days,
        "seed": seed,
        "segmentation": {"method": "kmeans", "k": k},
        "prediction": {"targets": list(targets)},
        "output": str(output),
    }
    path = output.parent / f"{output.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, yaml.safe_dump(doc, sort_keys=False))
    return load_run_config(path)
