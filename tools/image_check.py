"""Check that the image's environment can run the pods bigseg asks Kubernetes for.

usage: VENV/bin/python tools/image_check.py CLUSTER.yaml

Run with the python of a venv made by deploy/install.sh (.ci/run does, right after the
install): it builds the DaskCluster resource of CLUSTER.yaml with the installed Dask
operator, as `bigseg ... --cluster CLUSTER.yaml` sends it, and checks that the scheduler's
and the workers' container args name a program of this venv whose parser accepts them, and
that both pods run the config's image and service account. Only a cluster can do more; this
catches the pods that would never start (a command the image lacks, a flag it refuses).
Exits 1 and lists the problems.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path

import click
from dask_kubernetes.operator import make_cluster_spec

from bigseg.engine import load_cluster_config
from bigseg.engine._clusters import kubernetes_cluster_spec


def _command_problem(args: list[str], bindir: Path) -> str | None:
    """Why ``args`` would not start in this venv, or None."""
    if not (bindir / args[0]).is_file():
        return f"{args[0]!r} is not installed in {bindir}"
    if args[0] != "dask":
        return f"runs {args[0]!r}, not a `dask` subcommand"
    subcommands = entry_points(group="dask_cli")
    if args[1] not in subcommands.names:
        return f"`dask {args[1]}` does not exist (have: {', '.join(sorted(subcommands.names))})"
    command = subcommands[args[1]].load()
    try:
        ctx = command.make_context(f"dask {args[1]}", list(args[2:]))
    except click.ClickException as e:
        return f"`dask {args[1]}` refuses {args[2:]}: {e.format_message()}"
    # `dask worker` takes options it does not know as positional arguments (the scheduler's
    # address, the --preload modules' arguments), so a misspelt flag is no error there
    for param in command.params:
        if isinstance(param, click.Argument):
            values = ctx.params.get(param.name) or ()
            values = (values,) if isinstance(values, str) else values
            unknown = [v for v in values if str(v).startswith("-")]
            if unknown:
                return f"`dask {args[1]}` does not know {unknown}"
    return None


def main(argv: list[str]) -> int:
    (config,) = argv
    cfg = load_cluster_config(config)
    spec = kubernetes_cluster_spec(cfg, make_cluster_spec)
    bindir = Path(sys.executable).parent
    problems = []
    for role in ("scheduler", "worker"):
        pod = spec["spec"][role]["spec"]
        for container in pod["containers"]:
            why = _command_problem(container["args"], bindir)
            if why:
                problems.append(f"{role}: {why}")
            if container["image"] != cfg.image:
                problems.append(f"{role}: image {container['image']}, config {cfg.image}")
            missing = (cfg.env.keys() | cfg.secret_env.keys()) - {
                e["name"] for e in container["env"]
            }
            if missing:
                problems.append(f"{role}: environment lacks {sorted(missing)}")
        if pod.get("serviceAccountName") != cfg.service_account:
            problems.append(f"{role}: service account {pod.get('serviceAccountName')!r}")
    for p in problems:
        print(p)
    if not problems:
        print(f"{config}: the scheduler and worker pods' commands run in {bindir.parent}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
