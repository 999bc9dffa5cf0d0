"""One writer per output: a lease made of create-only objects (``DESIGN.md`` §7).

::

    <root>/_bigseg/lease/00000000000000000007.json
        {"epoch": 7, "holder": "host:pid", "run": "bigseg run", "token": "<uuid>",
         "expires": 1796300000.0, "written": 1796299880.0, "released": false}

The highest epoch is the lease's state. Every change is the create-only write
(:meth:`~bigseg.io.storage.Storage.put_if_absent`) of the *next* epoch; nothing is ever
overwritten, and only the holder deletes, and only epochs older than its current one.

* **Acquire**: list ``_bigseg/lease/``, read the highest epoch. Live and someone else's:
  :class:`~bigseg.errors.LeaseHeld` (exit 6) naming the holder and when it expires. Expired,
  released or absent: create epoch + 1. Two runs racing for it: the create-only write lets
  exactly one win; the loser reads the winner back and gets ``LeaseHeld``.
* **Renew**: while the run lives a background thread writes epoch + 1 (a later
  ``expires``) every ``ttl / 4`` seconds. Object stores have no compare-and-swap, only
  create-only writes: an overwrite of the current epoch could silently replace a rival's
  takeover, whereas a new epoch is created by exactly one writer. If the next epoch is
  already taken, someone took over after this lease expired: the lease is *lost*
  (:meth:`Lease.check` raises :class:`~bigseg.errors.LeaseLost`).
* **Release**: a final epoch with ``"released": true`` and ``"expires": 0``. Deleting the
  current epoch would expose the one before, which is ours and may still be live.
* **Takeover** of a stale lease (its holder died) is acquire on an expired epoch: the next
  epoch is created; never delete-then-create, which would let two runs both "create".

Failure modes: expiry is the holder's clock, compared with the acquirer's: ``ttl`` must
exceed the clock skew between machines by far (default 120 s). A holder paused longer than
``ttl`` loses its lease; it learns so at its next renewal or :meth:`Lease.check`, which
:func:`bigseg.io.commits.commit` calls (with a margin of ``ttl / 4``) before committing. A
commit is itself a create-only write of the next number, so even a holder that misses the
loss cannot overwrite another run's commit. The lease also relies on create-only writes:
:func:`lease` probes the store first (:func:`~bigseg.io.commits.probe_create_only`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from bigseg.errors import LeaseHeld, LeaseLost, PublishError
from bigseg.io.commits import META, join, numbered, numbers, probe_create_only
from bigseg.io.storage import Location, Storage

log = logging.getLogger(__name__)

LEASES = f"{META}/lease"
#: default time to live of a lease, in seconds
TTL = 120.0
#: epochs the holder keeps (its current one and the ones before): a reader that listed
#: just before a renewal still finds the epoch it is about to read
KEEP = 3


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def current(storage: Storage, root: Location, tries: int = 5) -> tuple[int, dict] | None:
    """The highest lease epoch and its record, None when there is none.

    One listing of ``_bigseg/lease/`` per try; a try repeats when the epoch it listed was
    deleted before it was read (its holder moved on and cleaned up).
    """
    directory = join(root, LEASES)
    for _ in range(tries):
        found = numbers(storage, directory)
        if not found:
            return None
        where = join(directory, numbered(found[-1]))
        try:
            record = json.loads(storage.read_text(where))
        except FileNotFoundError:
            continue
        except ValueError as e:
            raise PublishError(f"{where}: lease record is not valid JSON ({e})") from e
        if not isinstance(record, dict) or record.get("epoch") != found[-1]:
            raise PublishError(f"{where}: not a bigseg lease record of epoch {found[-1]}")
        return found[-1], record
    raise PublishError(f"{directory}: the lease changed {tries} times while being read")


def _dead_here(holder) -> bool:
    """True when ``holder`` (``host:pid``) was a process on this host that is gone:
    its lease need not be waited out (a run killed with SIGKILL, then re-run)."""
    host, _, pid = str(holder).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _live(record: dict, now: float) -> bool:
    if record.get("released") or float(record.get("expires", 0)) <= now:
        return False
    return not _dead_here(record.get("holder"))


def _held(root: Location, epoch: int, record: dict, now: float) -> LeaseHeld:
    left = float(record.get("expires", 0)) - now
    return LeaseHeld(
        f"{join(root, LEASES, numbered(epoch))}: another bigseg run holds this output's "
        f"lease: {record.get('holder')} (`{record.get('run')}`), until "
        f"{_when(float(record.get('expires', 0)))} ({max(left, 0):.0f} s from now, renewed "
        "while it runs). Wait for it to finish; if it died, its lease expires by itself"
    )


class Lease:
    """One holder's lease on an output (see the module docstring for the protocol).

    Parameters
    ----------
    storage, root
        The output.
    what : str
        What holds it (the command), for the messages of other runs.
    ttl : float
        Seconds a write of the lease keeps it live.
    renew_every : float, optional
        Seconds between renewals; default ``ttl / 4``.
    clock : callable
        Unix time now (tests inject one).
    """

    def __init__(
        self,
        storage: Storage,
        root: Location,
        what: str,
        *,
        ttl: float = TTL,
        renew_every: float | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.storage, self.root, self.what = storage, root, what
        self.ttl = float(ttl)
        self.renew_every = float(renew_every) if renew_every else self.ttl / 4
        self.clock = clock
        self.token = uuid.uuid4().hex
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.epoch: int | None = None
        self.expires = 0.0
        self.lost: str | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self, epoch: int, released: bool = False) -> dict:
        now = self.clock()
        return {
            "epoch": epoch,
            "holder": self.holder,
            "run": self.what,
            "token": self.token,
            "expires": 0.0 if released else now + self.ttl,
            "written": now,
            "released": released,
        }

    def _create(self, epoch: int, record: dict) -> bool:
        data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8")
        return self.storage.put_if_absent(join(self.root, LEASES, numbered(epoch)), data)

    def acquire(self) -> Lease:
        """Take the lease: create the next epoch over an absent, expired or released one.

        Raises
        ------
        LeaseHeld
            It is live and someone else's, or another run won the race to take it.
        """
        self.storage.makedirs(join(self.root, LEASES))
        now = self.clock()
        found = current(self.storage, self.root)
        epoch = 0
        if found is not None:
            epoch, record = found
            if _live(record, now):
                raise _held(self.root, epoch, record, now)
            if not record.get("released"):
                log.warning(
                    "%s: taking over the expired lease of %s (`%s`, expired %s)",
                    self.root,
                    record.get("holder"),
                    record.get("run"),
                    _when(float(record.get("expires", 0))),
                )
        mine = self._record(epoch + 1)
        if not self._create(epoch + 1, mine):
            won = current(self.storage, self.root)
            if won is None:
                raise LeaseHeld(f"{join(self.root, LEASES)}: lost the race for the lease")
            raise _held(self.root, *won, self.clock())
        self.epoch, self.expires = epoch + 1, mine["expires"]
        self._collect()
        return self

    def renew(self) -> None:
        """Extend the lease: create the next epoch with a later expiry.

        Raises
        ------
        LeaseLost
            The next epoch was taken: another run took the lease over after it expired.
        """
        with self._mutex:
            if self.epoch is None or self.lost:
                raise LeaseLost(self.lost or f"{self.root}: the lease is not held")
            mine = self._record(self.epoch + 1)
            if not self._create(self.epoch + 1, mine):
                won = current(self.storage, self.root)
                who = won[1].get("holder") if won else "unknown"
                self.lost = (
                    f"{join(self.root, LEASES)}: this run's lease (epoch {self.epoch}) "
                    f"expired and was taken over by {who}; this run must not commit"
                )
                raise LeaseLost(self.lost)
            self.epoch, self.expires = self.epoch + 1, mine["expires"]
        self._collect()

    def check(self, margin: float | None = None) -> None:
        """Raise :class:`~bigseg.errors.LeaseLost` unless the lease is held and stays live
        for ``margin`` more seconds (default ``ttl / 4``): what to call before a commit."""
        margin = self.ttl / 4 if margin is None else margin
        if self.lost:
            raise LeaseLost(self.lost)
        if self.epoch is None:
            raise LeaseLost(f"{join(self.root, LEASES)}: the lease is not held")
        if self.clock() + margin >= self.expires:
            raise LeaseLost(
                f"{join(self.root, LEASES)}: this run's lease (epoch {self.epoch}) expires "
                f"at {_when(self.expires)}, too soon to commit safely (renewal fell behind)"
            )

    def release(self) -> None:
        """Give the lease up: create a final ``released`` epoch (nothing when lost)."""
        self.stop_renewing()
        with self._mutex:
            if self.epoch is None or self.lost:
                return
            epoch = self.epoch + 1
            try:
                if self._create(epoch, self._record(epoch, released=True)):
                    self.epoch = epoch
            except OSError as e:  # it expires by itself
                log.warning("%s: could not release the lease (%s)", self.root, e)
            self.expires = 0.0
        with contextlib.suppress(OSError):
            self._collect()
        self.epoch = None

    # -- background renewal --------------------------------------------------------------
    def start_renewing(self) -> None:
        """Renew every ``renew_every`` seconds in a daemon thread until released."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"bigseg-lease-{self.token[:8]}", daemon=True
        )
        self._thread.start()

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                self.renew()
            except LeaseLost as e:
                log.error("%s", e)
                return
            except OSError as e:  # transient: try again; check() refuses once too late
                log.warning("%s: lease renewal failed (%s); retrying", self.root, e)

    def _collect(self) -> None:
        """Delete this holder's view of old epochs: those below ``epoch - KEEP + 1``."""
        epoch = self.epoch
        if epoch is None:
            return
        directory = join(self.root, LEASES)
        for old in numbers(self.storage, directory):
            if old > epoch - KEEP:
                break
            self.storage.delete(join(directory, numbered(old)))


@contextlib.contextmanager
def lease(
    storage: Storage,
    root: Location,
    what: str,
    *,
    ttl: float = TTL,
    renew_every: float | None = None,
    probe: bool = True,
    clock: Callable[[], float] = time.time,
) -> Iterator[Lease]:
    """Hold the output's lease while the block runs, renewing it in the background.

    Parameters
    ----------
    storage, root
        The output.
    what : str
        What holds it (``"bigseg run"``), shown to runs it refuses.
    ttl, renew_every, clock
        See :class:`Lease`.
    probe : bool
        Refuse a store that ignores create-only writes first
        (:func:`~bigseg.io.commits.probe_create_only`): the lease rests on them.

    Raises
    ------
    LeaseHeld
        Another run holds it (exit 6), before the block runs.
    StoreUnsafe
        The store ignores create-only writes (exit 6).
    """
    if probe:
        probe_create_only(storage, root)
    held = Lease(storage, root, what, ttl=ttl, renew_every=renew_every, clock=clock).acquire()
    held.start_renewing()
    try:
        yield held
    finally:
        held.release()
