"""Peers run as separate processes (``benchmarks/peers/peer_<name>.py``), each on the same
generated data, each writing its per-stage timings as JSON and its scores as Parquet."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from bigseg.io.commit import delete_file, open_log


class Peer(NamedTuple):
    """One peer: its script in :func:`peers_dir`, the modules it needs, what it is, and
    extra arguments of the script (a variant of a shared script)."""

    script: str
    modules: tuple[str, ...]
    description: str
    args: tuple[str, ...] = ()


PEERS: dict[str, Peer] = {
    "pandas": Peer(
        "peer_pandas.py", ("pandas", "sklearn", "xgboost"), "pandas + scikit-learn + XGBoost"
    ),
    "duckdb": Peer(
        "peer_duckdb.py", ("duckdb", "sklearn", "xgboost"), "DuckDB + scikit-learn + XGBoost"
    ),
    "polars": Peer(
        "peer_polars.py", ("polars", "sklearn", "xgboost"), "Polars + scikit-learn + XGBoost"
    ),
    "daskdf": Peer(
        "peer_daskdf.py",
        ("dask", "distributed", "sklearn", "xgboost"),
        "dask.dataframe (local cluster) + scikit-learn + XGBoost",
    ),
    "daskml": Peer(
        "peer_pandas.py",
        ("pandas", "dask_ml", "xgboost"),
        "pandas + dask-ml KMeans (local cluster) + XGBoost",
        ("--kmeans", "dask-ml"),
    ),
    "cuml": Peer(
        "peer_pandas.py",
        ("pandas", "cuml", "xgboost"),
        "pandas + cuML KMeans (GPU) + XGBoost",
        ("--kmeans", "cuml"),
    ),
    "xgbdask": Peer(
        "peer_pandas.py",
        ("pandas", "sklearn", "xgboost", "distributed"),
        "pandas + scikit-learn + xgboost.dask (local cluster)",
        ("--trainer", "xgboost.dask"),
    ),
    "spark": Peer(
        "peer_spark.py",
        ("pyspark", "xgboost"),
        "Spark MLlib (local mode) + XGBoost's Spark estimators",
    ),
}
#: the peers each suite runs unless told otherwise (what the stage is compared against:
#: feature engines; clustering libraries; single-process XGBoost vs xgboost.dask)
SUITE_PEERS: dict[str, tuple[str, ...]] = {
    "features": ("pandas", "duckdb", "polars", "daskdf", "spark"),
    "segment": ("pandas", "daskml", "cuml", "spark"),
    "predict": ("pandas", "xgbdask", "spark"),
    "score": ("pandas", "duckdb", "spark"),
    "end-to-end": ("pandas", "duckdb", "spark"),
}
DEFAULT_PEERS = SUITE_PEERS["end-to-end"]
#: peer stage(s) that correspond to each bigseg stage; "start" is the engine start-up
STAGE_MAP: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "start": (("cluster_start",), ("spark_start", "cluster_start")),
    "ingest / load": (("ingest",), ("load",)),
    "features": (("features",), ("features",)),
    "segment": (("segment",), ("segment",)),
    "train": (("train",), ("train",)),
    "score + write": (("score",), ("score", "write")),
}


def peers_dir() -> Path:
    """Where the peer scripts are: ``$BIGSEG_PEERS_DIR`` or ``benchmarks/peers`` of the
    source checkout bigseg runs from."""
    env = os.environ.get("BIGSEG_PEERS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "benchmarks" / "peers"


def missing(name: str) -> str | None:
    """Why peer ``name`` cannot run here (None when it can)."""
    if name not in PEERS:
        return f"unknown peer (known: {', '.join(PEERS)})"
    peer = PEERS[name]
    if not (peers_dir() / peer.script).is_file():
        return f"peer script {peers_dir() / peer.script} not found"
    for m in peer.modules:
        if importlib.util.find_spec(m) is None:
            return "not installed"
    if name == "spark" and shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "not installed"
    return None


def run_peer(
    name: str,
    data: Path,
    as_of: str,
    horizon: int,
    work: Path,
    tag: str,
    until: str = "write",
    timeout: float | None = None,
) -> dict:
    """Run one peer to ``until``; returns its result JSON (``status`` "ok"), or
    ``{"status": "not installed" | "failed" | "timeout", ...}``."""
    why = missing(name)
    if why is not None:
        return (
            {"status": why} if why == "not installed" else {"status": "unavailable", "reason": why}
        )
    script = peers_dir() / PEERS[name].script
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"{tag}-{name}.json"
    scores = work / f"{tag}-{name}-scores.parquet"
    log = work / f"{tag}-{name}.log"
    delete_file(out)
    cmd = [
        sys.executable,
        str(script),
        "--data",
        str(data),
        "--as-of",
        as_of,
        "--horizon",
        str(horizon),
        "--out",
        str(out),
        "--scores",
        str(scores),
        "--until",
        until,
        *PEERS[name].args,
    ]
    t0 = time.perf_counter()
    try:
        with open_log(log) as f:
            rc = subprocess.run(
                cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=str(work)
            ).returncode
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "timeout_s": timeout, "log": str(log)}
    wall = round(time.perf_counter() - t0, 3)
    if rc != 0 or not out.is_file():
        tail = log.read_text(errors="replace").splitlines()[-15:]
        return {"status": "failed", "returncode": rc, "log": str(log), "log_tail": tail}
    res = json.loads(out.read_text())
    res.update(process_wall_s=wall, log=str(log), description=PEERS[name].description)
    return res
