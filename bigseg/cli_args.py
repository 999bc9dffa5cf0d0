"""The command line's arguments: every subcommand, its options and its help text."""

from __future__ import annotations

import argparse

from bigseg import __version__

DEMO_CUSTOMERS = 200_000


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cluster",
        metavar="FILE",
        default=None,
        help="cluster config (cluster_configs/*.yaml); default: a local cluster",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="compute device (default auto: GPU when usable, else CPU)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or summaries")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bigseg",
        description="Customer segmentation, churn and value prediction at scale on Dask.",
    )
    ap.add_argument("--version", action="version", version=f"bigseg {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(sub)
    _add_stage_commands(sub)
    _add_erase(sub)
    _add_export(sub)
    _add_gc(sub)
    _add_benchmark(sub)
    _add_cluster_check(sub)
    return ap


def _add_data_commands(sub) -> None:
    p = sub.add_parser("demo", help="generate synthetic data and run the whole pipeline")
    p.add_argument("--customers", type=int, default=DEMO_CUSTOMERS)
    p.add_argument("--out", default="bigseg-demo")
    p.add_argument("--seed", type=int, default=0)
    _common(p)

    p = sub.add_parser("generate", help="write synthetic raw tables and ground truth")
    p.add_argument("--customers", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    _common(p)


def _add_stage_commands(sub) -> None:
    for name, text in [
        ("validate", "check config and input data; compute nothing else"),
        ("ingest", "raw inputs -> validated, customer-bucketed store"),
        ("features", "store -> features at as_of"),
        ("segment", "features -> segment model and segments/"),
        ("train", "features + labels -> prediction models"),
        ("score", "batch scoring -> scores/as_of=DATE/"),
        ("run", "ingest, features, segment, train, score, report"),
        ("report", "report.html from what exists"),
    ]:
        p = sub.add_parser(name, help=text)
        p.add_argument("config", help="run config (YAML)")
        if name == "score":
            p.add_argument("--as-of", default=None, help="scoring date (YYYY-MM-DD)")
            p.add_argument(
                "--model",
                default=None,
                metavar="VERSION",
                help="published model version to score with (a name under "
                "output/models/; default: LATEST)",
            )
        _common(p)


def _add_erase(sub) -> None:
    p = sub.add_parser("erase", help="right to erasure: remove customers from every output")
    p.add_argument("config", help="run config (YAML)")
    p.add_argument(
        "--ids", required=True, metavar="FILE", help="text file, one raw customer id per line"
    )
    _common(p)


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="the committed scores as one plain Parquet dataset, <to>/as_of=DATE/part-*.parquet",
    )
    p.add_argument("config", help="run config (YAML)")
    p.add_argument(
        "--to",
        required=True,
        metavar="PATH_OR_URL",
        help="destination folder or URL (s3://bucket/prefix), outside output:",
    )
    p.add_argument(
        "--as-of",
        default=None,
        metavar="DATE",
        help="export only this scoring date (YYYY-MM-DD); default: every committed date",
    )
    p.add_argument("--quiet", action="store_true", help="no summary")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")


def _add_gc(sub) -> None:
    p = sub.add_parser("gc", help="delete what no kept commit references (never a referenced file)")
    p.add_argument("config", help="run config (YAML)")
    p.add_argument("--keep", required=True, type=int, metavar="N", help="keep the newest N commits")
    p.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    p.add_argument("--quiet", action="store_true", help="no summary")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")


def _add_benchmark(sub) -> None:
    p = sub.add_parser(
        "benchmark",
        help="time bigseg beside pandas, DuckDB, Polars, Dask, "
        "XGBoost and Spark on the same generated data; charts and tables "
        "from the results",
    )
    p.add_argument(
        "--suite",
        action="append",
        default=None,
        metavar="SUITE",
        help="features, segment, predict, score, end-to-end, scaling (repeatable "
        "or a comma list; default end-to-end)",
    )
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument(
        "--workers",
        default="1,2",
        metavar="N,M",
        help="worker counts of the scaling suite (default 1,2)",
    )
    p.add_argument(
        "--n-workers",
        type=int,
        default=None,
        metavar="N",
        help="bigseg's local workers in the other suites (default one per core)",
    )
    p.add_argument(
        "--out",
        default="benchmarks/results",
        metavar="DIR",
        help="directory of the results JSON (default benchmarks/results)",
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="keep (and reuse) the generated data and the peers' outputs here",
    )
    p.add_argument(
        "--peers",
        default="auto",
        metavar="A,B",
        help="peers to run in every suite (default 'auto': each suite's own set, "
        "e.g. features: pandas,duckdb,polars,daskdf,spark; segment: "
        "pandas,daskml,cuml,spark; predict: pandas,xgbdask,spark; "
        "end-to-end: pandas,duckdb,spark; '' for none)",
    )
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peer-timeout", type=float, default=7200, metavar="SECONDS")
    p.add_argument(
        "--charts",
        default=None,
        metavar="DIR",
        help="where the PNG charts and the Markdown table go (default: --out)",
    )
    p.add_argument(
        "--render",
        default=None,
        metavar="RESULTS.json",
        help="only draw the charts and the table of an existing results file",
    )
    _common(p)


def _add_cluster_check(sub) -> None:
    p = sub.add_parser(
        "cluster-check",
        help="connect to a cluster; print workers, threads, memory, GPUs; check versions "
        "and, with --config, that every worker reads the inputs and writes under output:",
        description="Exit 0 when the cluster can run a job, 5 when it cannot: one 'problem' "
        "line each, with its fix.",
    )
    p.add_argument("cluster_file", metavar="CLUSTER.yaml")
    p.add_argument(
        "--config",
        metavar="CONFIG",
        default=None,
        help="a run config: also check that every worker can read each input and write "
        "and delete under output:",
    )
    p.add_argument("--min-workers", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
