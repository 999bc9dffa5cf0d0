"""What a benchmark result records about where it ran: hardware (CPU, cores, memory, GPU
model and driver), library versions, and the peak memory of a process tree."""

from __future__ import annotations

import shutil
import subprocess
import threading
from importlib import metadata

from bigseg.registry import hardware_info, library_versions

#: versions recorded beside bigseg's own dependencies (peers and tools, when installed)
EXTRA_LIBRARIES = ("duckdb", "polars", "pyspark", "dask-ml", "matplotlib", "psutil")


def gpu_details() -> list[dict]:
    """Model, driver and memory of each NVIDIA GPU (from ``nvidia-smi``; no GPU library is
    imported). Empty when there is none or the tool is missing."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"model": parts[0], "driver": parts[1], "memory": parts[2]})
    return gpus


def hardware() -> dict:
    """:func:`bigseg.registry.hardware_info` plus the GPU models and driver.

    Examples
    --------
    >>> sorted(hardware())[:3]
    ['cores', 'cpu', 'gpu_details']
    """
    hw = hardware_info()
    details = gpu_details()
    hw["gpu_details"] = details
    if details:
        hw["gpu_model"] = details[0]["model"]
        hw["gpu_driver"] = details[0]["driver"]
    return hw


def versions() -> dict[str, str]:
    """bigseg's library versions plus the peers' (DuckDB, Polars, Spark, ...) when installed."""
    out = library_versions()
    for pkg in EXTRA_LIBRARIES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


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
