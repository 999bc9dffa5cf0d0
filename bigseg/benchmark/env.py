"""What a benchmark result records about where it ran: hardware (CPU, cores, memory, GPU
model and driver), library versions, and the peak memory of a process tree."""

from __future__ import annotations

import threading

from bigseg.machine import EXTRA_LIBRARIES, gpu_details, hardware, versions

__all__ = ["EXTRA_LIBRARIES", "OtherCPU", "PeakRSS", "gpu_details", "hardware", "versions"]


class PeakRSS:
    """Peak resident memory of this process and its children (the workers), sampled
    every ``interval`` seconds in a background thread; :meth:`stop` returns it in bytes.

    Examples
    --------
    >>> rss = PeakRSS()
    >>> rss.stop() >= 0
    True
    """

    def __init__(self, interval: float = 0.2):
        import psutil

        self.peak = 0
        self._stop = threading.Event()
        self._me = psutil.Process()
        self._interval = interval
        self._sample()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _sample(self) -> None:
        total = 0
        try:
            procs = [self._me, *self._me.children(recursive=True)]
        except Exception:  # noqa: BLE001 - the tree changed while listed
            procs = [self._me]
        for p in procs:
            try:
                total += p.memory_info().rss
            except Exception:  # noqa: BLE001 - a process that just exited
                pass
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds used so far by the whole machine, by this process tree: this process,
    its live descendants and the children it has waited for). Over a run, the first
    difference minus the second is the CPU other processes took while it ran: on a
    shared machine, a run that competed for the cores says so in its results."""
    import psutil

    t = psutil.cpu_times()
    busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
    me = psutil.Process()
    mine = 0.0
    try:
        procs = [me, *me.children(recursive=True)]
    except Exception:  # noqa: BLE001 - the tree changed while listed
        procs = [me]
    for p in procs:
        try:
            c = p.cpu_times()
            mine += c.user + c.system + c.children_user + c.children_system
        except Exception:  # noqa: BLE001 - a process that just exited
            pass
    return busy, mine


class OtherCPU:
    """Context manager: ``seconds`` = CPU seconds other processes used meanwhile."""

    def __enter__(self):
        self._m0, self._t0 = cpu_seconds()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        m1, t1 = cpu_seconds()
        self.seconds = round(max(0.0, (m1 - self._m0) - (t1 - self._t0)), 1)
