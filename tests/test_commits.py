"""bigseg.io.commits, lease and gc: commits without rename (DESIGN.md section 7).

Every test takes the ``output`` fixture, ``(storage, root)``, and touches the output only
through the :class:`~bigseg.io.storage.Storage` interface, so the same bodies run on any
storage: add a factory to :data:`OUTPUTS` (``"s3": lambda request, tmp_path:
request.getfixturevalue("s3_output")``) and every test runs there too.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from bigseg.errors import (
    CommitConflict,
    DatasetMissing,
    LeaseHeld,
    LeaseLost,
    PublishError,
    StoreUnsafe,
)
from bigseg.io import commits, gc, lease
from bigseg.io.commits import COMMITS, join, numbered
from bigseg.io.storage import LocalStorage, Storage, storage_for

#: the storages every test runs on: name -> (request, tmp_path) -> (storage, root)
OUTPUTS = {
    "local": lambda request, tmp_path: (LocalStorage(), tmp_path / "out"),
    # moto's S3 server (bigseg/testing/s3server.py): create-only is If-None-Match: * there
    "s3": lambda request, tmp_path: (
        storage_for(request.getfixturevalue("s3").url()),
        request.getfixturevalue("s3").url("out"),
    ),
}


#: on S3 every body runs in `make test-slow` (CI runs both); the default suite keeps the
#: local runs and the S3 store that ignores create-only writes (below)
@pytest.fixture(
    params=[pytest.param(k, marks=[pytest.mark.slow] if k == "s3" else []) for k in sorted(OUTPUTS)]
)
def output(request, tmp_path):
    storage, root = OUTPUTS[request.param](request, tmp_path)
    storage.makedirs(root)
    return storage, root


class Proxy(Storage):
    """A storage that delegates every call to ``inner`` and records ``(method, path)``."""

    def __init__(self, inner: Storage):
        self.inner = inner
        self.calls: list[tuple[str, str]] = []
        self.filesystem = inner.filesystem

    def _call(self, name, path, *args):
        self.calls.append((name, str(path)))
        return getattr(self.inner, name)(path, *args)

    def read_bytes(self, path):
        return self._call("read_bytes", path)

    def read_text(self, path, encoding="utf-8"):
        return self._call("read_text", path, encoding)

    def open_read(self, path):
        return self._call("open_read", path)

    def exists(self, path):
        return self._call("exists", path)

    def is_file(self, path):
        return self._call("is_file", path)

    def is_dir(self, path):
        return self._call("is_dir", path)

    def list(self, path):
        return self._call("list", path)

    def info(self, path):
        return self._call("info", path)

    def write_bytes(self, path, data):
        return self._call("write_bytes", path, data)

    def open_write(self, path):
        return self._call("open_write", path)

    def put_if_absent(self, path, data):
        return self._call("put_if_absent", path, data)

    def makedirs(self, path):
        return self._call("makedirs", path)

    def copy(self, src, dst):
        return self._call("copy", src, dst)

    def delete(self, path):
        return self._call("delete", path)

    def delete_tree(self, path):
        return self._call("delete_tree", path)

    def find(self, path):
        return self._call("find", path)

    def glob(self, pattern):
        return self._call("glob", pattern)


class IgnoresCreateOnly(Proxy):
    """A store that ignores create-only writes (an S3 emulator dropping If-None-Match)."""

    def put_if_absent(self, path, data):
        self.inner.makedirs(join_parent(path))
        self.inner.write_bytes(path, data)
        return True


def join_parent(path):
    s = str(path)
    return s[: s.rstrip("/").rfind("/")]


def write(storage, root, rel, data: bytes):
    where = join(root, rel)
    storage.makedirs(join_parent(where))
    storage.write_bytes(where, data)
    return rel


def datasets_of(storage, root, run, files: dict[str, list[str]]):
    """Write ``files`` (dataset -> names) under ``runs/<run>/`` and return their entries."""
    out = {}
    for name, names in files.items():
        rels = [
            write(storage, root, f"runs/{run}/{name}/{f}", f"{run}:{f}".encode()) for f in names
        ]
        out[name] = commits.dataset_entry(storage, root, rels, rows=len(rels))
    return out


# -- run ids ---------------------------------------------------------------------------------
def test_run_id_is_stable_and_depends_on_the_parent():
    cfg = {"segmentation": {"k": "auto"}, "targets": {"churn", "value"}}
    a = commits.run_id(3, cfg, "fp1", "2026-06-30", "0.1.0")
    assert a == commits.run_id(3, dict(reversed(cfg.items())), "fp1", "2026-06-30", "0.1.0")
    assert len(a) == 24 and int(a, 16) >= 0
    assert commits.run_id(4, cfg, "fp1", "2026-06-30", "0.1.0") != a
    assert commits.run_id(3, cfg, "fp2", "2026-06-30", "0.1.0") != a
    assert commits.run_id(3, cfg, "fp1", "2026-07-31", "0.1.0") != a
    assert commits.run_id(3, cfg, "fp1", "2026-06-30", "0.2.0") != a
    assert commits.run_id(3, {**cfg, "k": 5}, "fp1", "2026-06-30", "0.1.0") != a


def test_names_and_locations():
    assert commits.join("s3://lake/out/", COMMITS, numbered(7)) == (
        "s3://lake/out/_bigseg/commits/00000000000000000007.json"
    )
    assert commits.number_of(numbered(12)) == 12
    for stray in ["7.json", f".{numbered(3)}.0123abcd.tmp", "notes.txt", numbered(3) + ".bak"]:
        assert commits.number_of(stray) is None


# -- committing and reading ------------------------------------------------------------------
def test_commit_n_plus_one_and_the_manifest_is_the_full_state(output):
    storage, root = output
    assert commits.latest(storage, root) is None
    ds1 = datasets_of(storage, root, "r1", {"store": ["a", "b"], "features": ["f"]})
    assert commits.commit(storage, root, 0, ds1, "r1") == 1
    n, m = commits.latest(storage, root)
    assert n == 1 and m["parent"] == 0 and m["run_id"] == "r1" and m["version"] == 1
    assert m["datasets"]["store"]["rows"] == 2
    f = m["datasets"]["store"]["files"][0]
    assert f["path"] == "runs/r1/store/a" and f["size"] == len(b"r1:a")
    assert len(f["sha256"]) == 64
    ds2 = commits.carry_forward(m, datasets_of(storage, root, "r2", {"features": ["g"]}))
    assert commits.commit(storage, root, 1, ds2, "r2") == 2
    n, m = commits.latest(storage, root)
    assert n == 2 and m["parent"] == 1
    assert commits.resolve(storage, root, "store") == [
        join(root, "runs/r1/store/a"),
        join(root, "runs/r1/store/b"),
    ]
    assert commits.resolve(storage, root, "features") == [join(root, "runs/r2/features/g")]
    names = storage.list(join(root, COMMITS))
    assert names == [numbered(1), numbered(2)] and len(names[0]) == 25


def test_readers_list_only_the_commit_log(output):
    storage, root = output
    ds = datasets_of(storage, root, "r1", {"scores/as_of=2026-06-30": ["s0", "s1"]})
    commits.commit(storage, root, 0, ds, "r1")
    # junk a reader that listed data prefixes would pick up
    for rel in ["runs/zz/scores/as_of=2026-06-30/s9", "scores/as_of=2026-06-30/old", "x/y"]:
        write(storage, root, rel, b"junk")
    write(storage, root, f"{COMMITS}/notes.txt", b"not a commit")
    write(storage, root, f"{COMMITS}/.{numbered(9)}.0123abcd.tmp", b"a write in progress")
    spy = Proxy(storage)
    for _ in range(2):  # no cached listing: every call lists again
        assert commits.latest(spy, root)[0] == 1
        files = commits.resolve(spy, root, "scores/as_of=2026-06-30")
    assert files == [join(root, f"runs/r1/scores/as_of=2026-06-30/s{i}") for i in range(2)]
    lists = [p for op, p in spy.calls if op == "list"]
    assert lists == [str(join(root, COMMITS))] * 4
    assert {op for op, _ in spy.calls} == {"list", "read_text"}
    with pytest.raises(DatasetMissing, match="no dataset 'models/v9'.*scores"):
        commits.resolve(storage, root, "models/v9")


def test_commit_under_a_live_lease_and_resolve_against_one_commit(output):
    storage, root = output
    with lease.lease(storage, root, "bigseg run") as held:
        latest = commits.latest(storage, root)
        parent = latest[0] if latest else 0
        rid = commits.run_id(parent, {"k": 4}, "fp", "2026-06-30", "0.1.0")
        ds = datasets_of(storage, root, rid, {"segments": ["s"], "metrics": ["m.json"]})
        assert commits.commit(storage, root, parent, ds, rid, lease=held) == 1
    pinned = commits.read_commit(storage, root, 1)
    commits.commit(storage, root, 1, commits.carry_forward(pinned, {}, drop=["metrics"]), "r2")
    assert commits.resolve(storage, root, "metrics", manifest=pinned) == [
        join(root, f"runs/{rid}/metrics/m.json")
    ]
    with pytest.raises(DatasetMissing):
        commits.resolve(storage, root, "metrics")


def test_nothing_committed_is_a_missing_dataset(output):
    storage, root = output
    with pytest.raises(DatasetMissing, match="nothing committed"):
        commits.resolve(storage, root, "scores/as_of=2026-06-30")


def test_manifest_paths_must_be_relative(output):
    storage, root = output
    for bad in ["/etc/passwd", "../x", "runs/../../x", ""]:
        with pytest.raises(ValueError, match="relative"):
            commits.dataset_entry(storage, root, [{"path": bad, "size": 1, "sha256": "0"}])


def test_racing_committers_exactly_one_wins(output):
    storage, root = output
    commits.commit(storage, root, 0, datasets_of(storage, root, "r0", {"store": ["a"]}), "r0")
    barrier = threading.Barrier(2)

    class Racing(Proxy):
        def put_if_absent(self, path, data):
            if str(path).endswith(numbered(2)):
                barrier.wait(timeout=10)
            return super().put_if_absent(path, data)

    racing = Racing(storage)
    results: dict[str, object] = {}
    mine = {r: datasets_of(storage, root, r, {"store": ["a"], "segments": [r]}) for r in "ab"}

    def go(run):
        try:
            results[run] = commits.commit(racing, root, 1, mine[run], run)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            results[run] = e

    threads = [threading.Thread(target=go, args=(r,)) for r in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    winners = [r for r, v in results.items() if v == 2]
    losers = [r for r, v in results.items() if isinstance(v, CommitConflict)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert f"taken by run {winners[0]}" in str(results[losers[0]])
    assert CommitConflict.exit_code == 6 and isinstance(results[losers[0]], PublishError)
    n, m = commits.latest(storage, root)
    assert n == 2 and m["run_id"] == winners[0] and m["datasets"] == mine[winners[0]]


def test_own_earlier_attempt_counts_as_success(output):
    storage, root = output
    ds = datasets_of(storage, root, "r1", {"store": ["a"]})
    assert commits.commit(storage, root, 0, ds, "r1") == 1
    before = storage.read_bytes(join(root, COMMITS, numbered(1)))
    # a retry of the same run (its first write landed but the answer was lost)
    assert commits.commit(storage, root, 0, ds, "r1") == 1
    assert storage.read_bytes(join(root, COMMITS, numbered(1))) == before
    # the same run id with other contents is not "ours"
    with pytest.raises(CommitConflict, match="commit 1 was taken by run r1"):
        commits.commit(storage, root, 0, datasets_of(storage, root, "r1", {"x": ["b"]}), "r1")
    with pytest.raises(CommitConflict, match="taken by run r1"):
        commits.commit(storage, root, 0, ds, "r2")


def test_ambiguous_write_is_read_back(output):
    storage, root = output

    class Flaky(Proxy):
        """The first commit write lands, then the connection drops."""

        failed = False

        def put_if_absent(self, path, data):
            done = super().put_if_absent(path, data)
            if COMMITS in str(path) and not self.failed:
                self.failed = True
                raise TimeoutError("read timed out")
            return done

    flaky = Flaky(storage)
    ds = datasets_of(storage, root, "r1", {"store": ["a"]})
    assert commits.commit(flaky, root, 0, ds, "r1", probe=False) == 1
    assert flaky.failed and commits.latest(storage, root)[1]["run_id"] == "r1"


def test_commit_on_a_stale_parent_below_the_newest_is_refused(output):
    storage, root = output
    for i in range(3):
        ds = datasets_of(storage, root, f"r{i}", {"store": ["a"]})
        commits.commit(storage, root, i, ds, f"r{i}")
    gc.gc(storage, root, keep=1)  # commits 1 and 2 deleted
    with pytest.raises(CommitConflict, match="commit 3 is newer"):
        commits.commit(storage, root, 1, {}, "late")
    assert commits.latest(storage, root)[0] == 3


def test_store_ignoring_create_only_writes_is_refused(output):
    storage, root = output
    unsafe = IgnoresCreateOnly(storage)
    with pytest.raises(StoreUnsafe, match=r"\(IgnoresCreateOnly\) ignores create-only writes"):
        commits.probe_create_only(unsafe, root)
    assert StoreUnsafe.exit_code == 6
    with pytest.raises(StoreUnsafe):
        commits.commit(unsafe, root, 0, {}, "r1")
    with pytest.raises(StoreUnsafe), lease.lease(unsafe, root, "bigseg run"):
        pass
    assert commits.latest(storage, root) is None
    assert storage.list(join(root, commits.PROBES)) == []  # the probe is gone
    commits.probe_create_only(storage, root)  # the real store passes
    assert storage.list(join(root, commits.PROBES)) == []


# -- the lease -------------------------------------------------------------------------------
class Clock:
    def __init__(self, t=1_800_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_held_lease_refuses_a_second_holder(output):
    storage, root = output
    with lease.lease(storage, root, "bigseg run", ttl=60) as held:
        assert held.epoch == 1
        with pytest.raises(LeaseHeld, match=r"lease: .*:\d+ \(`bigseg run`\), until") as e:
            with lease.lease(storage, root, "bigseg score"):
                pytest.fail("the block of a refused lease must not run")
        assert e.value.exit_code == 6 and isinstance(e.value, PublishError)
        with pytest.raises(LeaseHeld):
            gc.gc(storage, root, keep=1)
        held.check()
    epoch, record = lease.current(storage, root)
    assert record["released"] and record["expires"] == 0 and epoch == 2
    with lease.lease(storage, root, "bigseg score") as again:  # released: free at once
        assert again.epoch == 3


def test_expired_lease_is_taken_over_by_the_next_epoch(output):
    storage, root = output
    clock = Clock()
    dead = lease.Lease(storage, root, "bigseg run", ttl=60, clock=clock).acquire()
    clock.t += 59
    with pytest.raises(LeaseHeld):
        lease.Lease(storage, root, "bigseg run", clock=clock).acquire()
    clock.t += 2  # the holder died without releasing: its lease expires
    new = lease.Lease(storage, root, "bigseg run", ttl=60, clock=clock).acquire()
    assert new.epoch == dead.epoch + 1
    # taken over by creating the next epoch: the stale one was not deleted first
    assert commits.numbers(storage, join(root, lease.LEASES)) == [dead.epoch, new.epoch]
    assert lease.current(storage, root)[1]["token"] == new.token
    # the old holder wakes up: its renewal finds the next epoch taken
    with pytest.raises(LeaseLost, match="taken over"):
        dead.renew()
    with pytest.raises(LeaseLost):
        dead.check()
    with pytest.raises(LeaseLost):
        commits.commit(storage, root, 0, {}, "r1", lease=dead)
    dead.release()  # a lost lease releases nothing
    assert lease.current(storage, root)[1]["token"] == new.token
    new.release()


def test_renewal_keeps_the_lease_past_its_ttl(output):
    storage, root = output
    with lease.lease(storage, root, "bigseg run", ttl=1.5, renew_every=0.2) as held:
        time.sleep(3.0)
        assert held.epoch > 3  # renewed several times
        with pytest.raises(LeaseHeld):
            lease.Lease(storage, root, "bigseg score").acquire()
        held.check(margin=0.1)
        held.stop_renewing()
        epochs = commits.numbers(storage, join(root, lease.LEASES))
        assert len(epochs) <= lease.KEEP and epochs[-1] == held.epoch  # old epochs collected
    assert lease.current(storage, root)[1]["released"]


def test_a_failed_renewal_is_retried(output):
    storage, root = output

    class Blip(Proxy):
        failures = 0

        def put_if_absent(self, path, data):
            if lease.LEASES in str(path) and not str(path).endswith(numbered(1)):
                if self.failures < 2:
                    self.failures += 1
                    raise ConnectionError("connection reset")
            return super().put_if_absent(path, data)

    blip = Blip(storage)
    with lease.lease(blip, root, "bigseg run", ttl=3, renew_every=0.1, probe=False) as held:
        deadline = time.monotonic() + 10
        while held.epoch < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert blip.failures == 2 and held.epoch >= 3 and not held.lost
        held.check()


def test_check_refuses_a_lease_about_to_expire(output):
    storage, root = output
    clock = Clock()
    held = lease.Lease(storage, root, "bigseg run", ttl=100, clock=clock).acquire()
    held.check()
    clock.t += 80  # renewal fell behind: 20 s left, less than ttl / 4
    with pytest.raises(LeaseLost, match="too soon"):
        held.check()
    held.renew()
    held.check()
    held.release()


def test_racing_for_a_stale_lease_exactly_one_wins(output):
    storage, root = output
    clock = Clock()
    lease.Lease(storage, root, "dead run", ttl=10, clock=clock).acquire()
    clock.t += 11
    barrier = threading.Barrier(4)

    class Racing(Proxy):
        def put_if_absent(self, path, data):
            if lease.LEASES in str(path):
                barrier.wait(timeout=10)
            return super().put_if_absent(path, data)

    results = []

    def go(i):
        try:
            results.append(lease.Lease(Racing(storage), root, f"run {i}", clock=clock).acquire())
        except LeaseHeld as e:
            results.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    won = [r for r in results if isinstance(r, lease.Lease)]
    assert len(results) == 4 and len(won) == 1, results
    assert won[0].epoch == 2 and lease.current(storage, root)[1]["token"] == won[0].token
    assert all(f"`{won[0].what}`" in str(r) for r in results if isinstance(r, LeaseHeld))


# -- garbage collection ----------------------------------------------------------------------
def test_gc_keeps_every_referenced_file(output):
    """Several commits sharing files (a stage carries the others forward)."""
    storage, root = output
    import random

    rng = random.Random(17)
    parent, all_files = None, set()
    for i in range(8):
        run = f"r{i}"
        stages = rng.sample(["store", "features", "segments", "scores/as_of=2026-06-30"], 2)
        new = datasets_of(
            storage, root, run, {s: [f"p{j}" for j in range(rng.randint(1, 3))] for s in stages}
        )
        write(storage, root, f"runs/{run}/_markers/bucket=00001.done", b"")  # never listed
        all_files |= {f"runs/{run}/_markers/bucket=00001.done"}
        all_files |= {f["path"] for e in new.values() for f in e["files"]}
        ds = commits.carry_forward(parent, new, drop=["segments"] if i == 5 else ())
        commits.commit(storage, root, i, ds, run)
        parent = commits.latest(storage, root)[1]
    write(storage, root, "runs/crashed/features/p0", b"a run that died before committing")
    write(storage, root, "elsewhere/keep-me", b"outside runs/: never touched")
    all_files |= {"runs/crashed/features/p0"}
    manifests = {n: commits.read_commit(storage, root, n) for n in range(1, 9)}
    for keep in (5, 3, 1):
        before = lease.current(storage, root)
        dry = gc.gc(storage, root, keep=keep, dry_run=True)
        report = gc.gc(storage, root, keep=keep)
        assert dry.deleted == report.deleted and dry.deleted_bytes == report.deleted_bytes
        kept = list(range(9 - keep, 9))
        assert report.kept_commits == kept
        listed = set().union(*(commits.referenced(manifests[n]) for n in kept))
        for rel in listed:  # every file a kept commit lists is there, unchanged
            assert storage.is_file(join(root, rel)), rel
        for n in kept:
            for e in manifests[n]["datasets"].values():
                for f in e["files"]:
                    assert commits.file_entry(storage, root, f["path"]) == f
        gone = {rel for rel in all_files if not storage.exists(join(root, rel))}
        assert gone == all_files - listed and not gone & listed
        assert set(report.deleted) <= gone and report.deleted_files == len(report.deleted)
        assert commits.numbers(storage, join(root, COMMITS)) == kept
        assert commits.latest(storage, root)[1] == manifests[8]
        assert storage.read_bytes(join(root, "elsewhere/keep-me")).startswith(b"outside")
        after = lease.current(storage, root)  # gc took the lease and released it
        assert after[1]["released"] and after[0] > (before[0] if before else 0)
    assert storage.list(join(root, "runs/crashed")) == []


def test_gc_reports_bytes_and_refuses_a_bad_keep(output):
    storage, root = output
    ds = datasets_of(storage, root, "r1", {"store": ["a"]})
    commits.commit(storage, root, 0, ds, "r1")
    write(storage, root, "runs/r0/old", b"12345")
    report = gc.gc(storage, root, keep=1)
    assert (report.deleted_files, report.deleted_bytes, report.deleted) == (1, 5, ["runs/r0/old"])
    assert "1 files (5 bytes)" in report.summary()
    assert gc.gc(storage, root, keep=3).deleted_files == 0
    with pytest.raises(Exception, match="at least 1") as e:
        gc.gc(storage, root, keep=0)
    assert e.value.exit_code == 2


def test_gc_under_a_held_lease_and_on_an_empty_output(output):
    storage, root = output
    assert gc.gc(storage, root, keep=2).kept_commits == []
    with lease.lease(storage, root, "bigseg run") as held:
        assert gc.gc(storage, root, keep=2, held=held).deleted_files == 0


def test_manifest_on_disk_is_json_with_the_documented_schema(output):
    storage, root = output
    ds = datasets_of(storage, root, "r1", {"metrics": ["metrics.json"]})
    commits.commit(storage, root, 0, ds, "r1")
    m = json.loads(storage.read_text(join(root, COMMITS, numbered(1))))
    assert set(m) == {"version", "n", "parent", "run_id", "created", "datasets"}
    assert m["created"].endswith("Z")
    assert set(m["datasets"]["metrics"]) == {"files", "rows"}
    assert set(m["datasets"]["metrics"]["files"][0]) == {"path", "size", "sha256"}


def test_an_s3_store_that_strips_create_only_is_refused(s3):
    """Behind a proxy that drops ``If-None-Match`` (a store that ignores create-only
    writes), the probe's second create succeeds: refused by name before any commit."""
    from bigseg.testing import s3server

    proxy = s3server.StripCreateOnly(s3.endpoint)
    try:
        direct = storage_for(s3.url())
        stripped = storage_for(s3.url(), {"endpoint_url": proxy.endpoint})
        commits.probe_create_only(direct, s3.url("out"))  # the server itself honours it
        with pytest.raises(StoreUnsafe, match="create-only"):
            commits.probe_create_only(stripped, s3.url("out"))
        assert proxy.stripped >= 2  # both creates went through the proxy, header dropped
        with pytest.raises(StoreUnsafe):
            commits.commit(stripped, s3.url("out"), 0, {}, "run-a")
        assert commits.latest(direct, s3.url("out")) is None  # nothing was committed
    finally:
        proxy.close()
