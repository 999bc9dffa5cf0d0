"""Command line: parse, load configs, open the engine, call the pipeline. No business logic.

Exit codes: 0 success; 1 unexpected error; 2 bad config; 3 bad input data; 4 GPU asked for
but unusable; 5 cluster unreachable or unfit, or backend missing; 6 publish refused (unsafe
path, lock); 7 model missing or tampered with; 8 out of space; 130 interrupted.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from bigseg.cli_args import build_parser
from bigseg.errors import BigsegError


def _out(args, *lines) -> None:
    if not args.quiet:
        for line in lines:
            print(line)


def _summary(args, metrics: dict) -> None:
    if args.quiet:
        return
    from rich.console import Console
    from rich.table import Table

    c = Console()
    t = Table(
        title=f"segments at {metrics.get('as_of')}  ({metrics.get('n_customers', 0):,} customers)"
    )
    for col in ("id", "segment", "customers", "share", "churn prob.", "pred. spend"):
        t.add_column(col, justify="right" if col not in ("segment",) else "left")
    for s in metrics.get("segments", []):
        t.add_row(
            str(s["id"]),
            s["name"],
            f"{s['size']:,}",
            f"{s['share']:.1%}",
            "–" if s.get("churn_probability") is None else f"{s['churn_probability']:.1%}",
            "–" if s.get("value_prediction") is None else f"{s['value_prediction']:,.2f}",
        )
    c.print(t)
    ch = metrics.get("churn", {})
    if ch.get("auc") is not None:
        c.print(
            f"churn model (forward backtest): AUC {ch['auc']:.3f}, PR-AUC {ch['pr_auc']:.3f}, "
            f"recency-only baseline AUC {ch.get('baseline_recency_auc') or float('nan'):.3f}"
        )
    tm = metrics.get("timings", {})
    c.print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in tm.items()))


def _run_stages(args, stages) -> dict:
    from bigseg.pipeline import run_pipeline

    return run_pipeline(
        args.config,
        cluster=args.cluster,
        device=args.device,
        stages=stages,
        model_version=getattr(args, "model", None),
    )


def _demo(args) -> int:
    import yaml

    from bigseg.backend import resolve
    from bigseg.config import load_run_config
    from bigseg.engine import connect
    from bigseg.io.commit import remove_tree, write_text_atomic
    from bigseg.pipeline import run_stages
    from bigseg.synth import generate

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "raw" / "_demo.json"
    want = {"customers": args.customers, "seed": args.seed}
    backend = resolve(args.device)
    with connect(args.cluster) as client:
        t0 = time.perf_counter()
        if marker.is_file() and json.loads(marker.read_text()) == want:
            _out(args, f"reusing synthetic data in {out / 'raw'}")
        else:
            for d in ("raw", "ground_truth"):
                remove_tree(out / d, attempts=1)
            _out(args, f"generating {args.customers:,} synthetic customers into {out / 'raw'} ...")
            generate(args.customers, out, seed=args.seed, client=client)
            write_text_atomic(marker, json.dumps(want))
        gen_s = time.perf_counter() - t0
        config = {
            "data": {
                t: {"path": f"raw/{t}"}
                for t in ("transactions", "customers", "events", "campaigns", "reviews")
            },
            "horizon_days": 90,
            "seed": args.seed,
            "segmentation": {"method": "kmeans", "k": "auto"},
            "prediction": {"targets": ["churn", "value", "response"]},
            "privacy": {"pseudonymize": False, "require_consent": True, "min_segment_size": 50},
            "output": str(out),
        }
        cfg_path = out / "bigseg.yaml"
        write_text_atomic(cfg_path, yaml.safe_dump(config, sort_keys=False))
        cfg = load_run_config(cfg_path)
        metrics = run_stages(cfg, client, backend)
    metrics.setdefault("timings", {})["generate"] = round(gen_s, 3)
    _summary(args, metrics)
    from bigseg.store.lock import open_output

    committed = open_output(cfg)
    _out(
        args,
        f"config:  {cfg_path}",
        f"metrics: {committed.files('metrics')[0]}",
        f"report:  {committed.files('report')[0]}",
        f"commit:  {committed.parent} (read the outputs with bigseg.read_scores or the "
        f"commit manifests under {out / '_bigseg' / 'commits'})",
    )
    return 0


def _generate(args) -> int:
    from bigseg.engine import connect
    from bigseg.synth import generate

    with connect(args.cluster) as client:
        summary = generate(args.customers, args.out, seed=args.seed, client=client)
    _out(args, json.dumps(summary, indent=2, default=str))
    return 0


def _validate(args) -> int:
    from bigseg.config import load_run_config
    from bigseg.engine import connect
    from bigseg.store.validate import validate_inputs

    cfg = load_run_config(args.config)
    with connect(args.cluster) as client:
        res = validate_inputs(cfg, client)
    for f in res["files"]:
        _out(args, f"{f['table']:<13} {f['rows']:>12,} rows  {f['path']}")
    for w in res.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    if res["problems"]:
        print(f"{len(res['problems'])} problem(s):", file=sys.stderr)
        for p in res["problems"]:
            print(f"  - {p}", file=sys.stderr)
        return 3
    _out(args, "config and inputs are valid")
    return 0


def _erase(args) -> int:
    from bigseg.config import load_run_config
    from bigseg.engine import connect
    from bigseg.erase import check_ready, erase, read_ids

    cfg = load_run_config(args.config)
    ids = read_ids(args.ids)  # bad ids file, no store, no key: fail before a cluster starts
    check_ready(cfg)
    from bigseg.store.lock import output_lease

    with output_lease(cfg, "bigseg erase") as held, connect(args.cluster) as client:
        res = erase(cfg, ids, client, held)
    _out(
        args,
        f"erased {res['customers_found']:,} of {res['requested']:,} requested customers "
        f"found in the store; {res['newly_logged']:,} id hash(es) added to {res['log']}",
    )
    missing = res.get("not_found") or []
    if missing:  # repr: an id's spaces are part of it
        shown = ", ".join(repr(i) for i in missing[:20])
        more = f" and {len(missing) - 20:,} more" if len(missing) > 20 else ""
        _out(args, f"not found in the store ({len(missing):,}): {shown}{more}")
    for where, n in res["rows_removed"].items():
        _out(args, f"  {where:<40} {n:>12,} rows removed")
    if not res["rows_removed"]:
        _out(args, "  no rows of these customers left under the output: nothing rewritten")
    for p in res["cleaned"]:
        _out(args, f"  deleted leftover {p}")
    _out(args, "input files are not modified; later ingests skip these customers")
    return 0


def _benchmark_command(args, suites: list[str], peers: list[str] | None) -> str:
    """The command line that reproduces this benchmark (options spelled out)."""
    cmd = f"bigseg benchmark --suite {','.join(suites)} --customers {args.customers}"
    named = "auto" if peers is None else ",".join(peers) or repr("")
    cmd += f" --peers {named} --repeats {args.repeats} --seed {args.seed}"
    if "scaling" in suites:
        cmd += f" --workers {args.workers}"
    for opt in ("n_workers", "data", "cluster"):
        if getattr(args, opt, None):
            cmd += f" --{opt.replace('_', '-')} {getattr(args, opt)}"
    return cmd + (f" --device {args.device}" if args.device != "auto" else "")


def _benchmark(args) -> int:
    from bigseg.benchmark import render, run_benchmark

    charts = args.charts or args.out
    if args.render:
        if not Path(args.render).is_file():
            raise BigsegError(f"{args.render}: no such results file")
        out = render(args.render, charts)
    else:
        suites = [
            s.strip() for v in (args.suite or ["end-to-end"]) for s in v.split(",") if s.strip()
        ]
        peers = (
            None
            if args.peers.strip() == "auto"
            else [p.strip() for p in args.peers.split(",") if p.strip()]
        )
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
        _, path = run_benchmark(
            suites,
            customers=args.customers,
            workers=workers,
            out=args.out,
            data=args.data,
            peers=peers,
            repeats=args.repeats,
            seed=args.seed,
            device=args.device,
            n_workers=args.n_workers,
            peer_timeout=args.peer_timeout,
            command=_benchmark_command(args, suites, peers),
            say=lambda line: _out(args, line),
        )
        _out(args, f"results: {path}")
        out = render(path, charts)
    _out(
        args,
        "",
        out["markdown"],
        f"table:  {out['table']}",
        *[f"chart:  {p}" for p in out["charts"]],
    )
    return 0


def _cluster_check(args) -> int:
    from bigseg.engine import cluster_check, format_cluster_info
    from bigseg.errors import ClusterError

    checks = {}
    if args.config:  # read before connecting: a bad config is exit 2 at once
        from bigseg.config import load_run_config
        from bigseg.pipeline.preflight import storage_problems

        cfg = load_run_config(args.config)
        checks["storage"] = lambda client: storage_problems(cfg, client)
    info = cluster_check(args.cluster_file, min_workers=args.min_workers, checks=checks)
    print(format_cluster_info(info))
    if info["problems"]:
        n, job = len(info["problems"]), args.config or "a bigseg job"
        print(
            f"bigseg cluster-check: error: {n} problem(s) above, each with its fix: this "
            f"cluster cannot run {job}",
            file=sys.stderr,
        )
    return ClusterError.exit_code if info["problems"] else 0


STAGE_COMMANDS = {
    "ingest": ("ingest",),
    "features": ("features",),
    "segment": ("features", "segment"),
    "train": ("features", "train"),
    "score": ("score",),
    "report": (),
    "run": ("ingest", "features", "segment", "train", "score", "report"),
}


def _stage(args) -> int:
    stages = STAGE_COMMANDS[args.command]
    if args.command == "report":
        from bigseg.config import load_run_config
        from bigseg.report import write_report
        from bigseg.store.lock import output_session

        cfg = load_run_config(args.config)
        with output_session(cfg, "bigseg report") as out:
            if not out.has("metrics"):
                raise BigsegError(
                    f"{out.root}: no metrics committed yet; run `bigseg run {args.config}` first"
                )
            path = write_report(out, out.read_json("metrics"), cfg.privacy.min_segment_size)
        _out(args, f"report: {path}")
        return 0
    if args.command == "score" and args.as_of:
        from bigseg.config import load_run_config
        from bigseg.exporter import parse_as_of

        as_of = parse_as_of(args.as_of)
        cfg = load_run_config(args.config)
        args.config = cfg.model_copy(update={"as_of": as_of})
    metrics = _run_stages(args, stages)
    if args.command in ("run", "score"):
        _summary(args, metrics)
    out = metrics.get("report")
    _out(args, f"done: {args.command}" + (f"; report: {out}" if out else ""))
    return 0


def _gc(args) -> int:
    from bigseg.config import load_run_config
    from bigseg.io.gc import gc

    cfg = load_run_config(args.config)
    report = gc(cfg.storage(), _output_root(cfg), args.keep, dry_run=args.dry_run)
    _out(args, f"gc {cfg.output_url}: {report.summary()}")
    return 0


def _export(args) -> int:
    from bigseg.exporter import command

    return command(args, lambda line: _out(args, line))


def _output_root(cfg):
    from bigseg.store.lock import open_output

    return open_output(cfg).root


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # distributed sets up INFO-level handlers when first imported
        os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "error")
    from bigseg import progress

    progress.set_enabled(not args.quiet)
    # SIGTERM (a scheduler's timeout, `kubectl delete`) unwinds like Ctrl-C: the output
    # lock is released and staging is left for the next run to clear; exit code 143
    signal.signal(signal.SIGTERM, _terminated)
    handlers = {
        "demo": _demo,
        "generate": _generate,
        "validate": _validate,
        "erase": _erase,
        "gc": _gc,
        "export": _export,
        "cluster-check": _cluster_check,
        "benchmark": _benchmark,
    }
    try:
        return handlers.get(args.command, _stage)(args)
    except BigsegError as e:
        print(f"bigseg {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"bigseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in OUT_OF_SPACE:
            raise
        print(f"bigseg {args.command}: error: {out_of_space(e)}", file=sys.stderr)
        return 8


#: errno values of a full disk or an exhausted quota
OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)


def out_of_space(e: OSError) -> str:
    """The message of exit code 8 for a write that ran out of space."""
    where = f" writing {e.filename}" if e.filename else ""
    return (
        f"out of space{where} ({os.strerror(e.errno)}). The output being written was not "
        f"published: every output keeps its last complete version, and the next run "
        f"clears what this one staged. Free space under output: (or point output: at a "
        f"larger disk) and run again"
    )


if __name__ == "__main__":
    sys.exit(main())
