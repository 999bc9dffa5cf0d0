"""Compute backend: the ONLY place that imports GPU libraries (CuPy, cuML).

``--device auto|cpu|gpu`` is resolved once, at the boundary, into a :class:`Backend`
holding the array module ``xp`` (numpy or cupy). Algorithms are written against ``xp``
and never branch on the device themselves.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import numpy as np

from bigseg.errors import DeviceError

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "gpu"]


@dataclass(frozen=True)
class Backend:
    """The resolved device: ``name`` is ``"cpu"`` or ``"gpu"``; ``xp`` the array module."""

    name: str
    xp: ModuleType
    reason: str = ""

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    @property
    def xgboost_device(self) -> str:
        return "cuda" if self.is_gpu else "cpu"

    def asarray(self, a, dtype=None):
        """Move ``a`` onto this backend's device."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        """Bring ``a`` back to host memory as a NumPy array."""
        if isinstance(a, np.ndarray):
            return a
        get = getattr(a, "get", None)
        return get() if callable(get) else np.asarray(a)


CPU = Backend("cpu", np, "")


@functools.lru_cache(maxsize=1)
def _gpu_probe() -> tuple[ModuleType | None, str]:
    """Return (cupy, "") when a usable GPU is present, else (None, why not). Probed once
    per process: worker tasks resolve their device on every call."""
    if importlib.util.find_spec("cupy") is None:
        return None, "CuPy is not installed (pip install 'bigseg[gpu]')"
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            return None, "CuPy found no CUDA device"
        cupy.zeros(1).sum().item()  # touch the device once: catches driver/runtime mismatch
        return cupy, ""
    except Exception as e:  # noqa: BLE001 - any CUDA failure means "no usable GPU"
        return None, f"CUDA is not usable: {type(e).__name__}: {e}"


def resolve(device: Device | Backend | None = "auto") -> Backend:
    """Resolve a device request into a :class:`Backend`.

    ``auto`` picks the GPU when usable and otherwise falls back to the CPU, logging why;
    ``gpu`` without a usable GPU raises :class:`~bigseg.errors.DeviceError`.

    Examples
    --------
    >>> resolve("cpu").xp.__name__
    'numpy'
    """
    if isinstance(device, Backend):
        return device
    device = device or "auto"
    if device == "cpu":
        return CPU
    if device not in ("auto", "gpu"):
        raise DeviceError(f"device must be one of auto, cpu, gpu; got {device!r}")
    cupy, why = _gpu_probe()
    if cupy is not None:
        return Backend("gpu", cupy, "")
    if device == "gpu":
        raise DeviceError(f"--device gpu was asked for but no usable GPU: {why}")
    log.info("device auto: using CPU because %s", why)
    return Backend("cpu", np, why)


def gpu_count() -> int:
    """Number of CUDA devices visible here (0 when CuPy or CUDA is missing)."""
    cupy, _ = _gpu_probe()
    return 0 if cupy is None else int(cupy.cuda.runtime.getDeviceCount())


def cuml_cluster(name: str):
    """cuML's ``cuml.cluster.<name>`` class when cuML is installed, else None (imported
    here, never elsewhere)."""
    if importlib.util.find_spec("cuml") is None:
        return None
    import cuml.cluster

    return getattr(cuml.cluster, name, None)
