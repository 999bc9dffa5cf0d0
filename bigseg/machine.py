"""Where a run or a benchmark ran: CPU, cores, memory, OS, GPUs (model, driver) and the
library versions. Imports nothing heavier than the standard library and NumPy (through
:mod:`bigseg.backend`), so scripts on a bare GPU machine without Dask can use it too."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata

#: bigseg's own dependencies, recorded with every model version and benchmark result
LIBRARIES = (
    "bigseg",
    "numpy",
    "pandas",
    "pyarrow",
    "dask",
    "distributed",
    "xgboost",
    "scikit-learn",
)
#: versions recorded beside them in benchmark results (peers and tools, when installed)
EXTRA_LIBRARIES = ("duckdb", "polars", "pyspark", "dask-ml", "matplotlib", "psutil")


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Python's version and those of :data:`LIBRARIES` (plus ``extra``) that are
    installed."""
    out = {"python": platform.python_version()}
    for pkg in (*LIBRARIES, *extra):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def hardware_info() -> dict:
    """CPU model, usable cores, memory, OS and visible GPUs of this machine (for run
    records and benchmark results)."""
    from bigseg.backend import gpu_count

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem / 2**30, 1),
        "gpus": gpu_count(),
        "os": platform.platform(),
    }


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
    """:func:`hardware_info` plus the GPU models and driver.

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


def versions(extra: tuple[str, ...] = EXTRA_LIBRARIES) -> dict[str, str]:
    """bigseg's library versions plus ``extra`` (by default the peers': DuckDB, Polars,
    Spark, ...) when installed."""
    return library_versions(extra)
