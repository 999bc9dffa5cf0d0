"""benchmarks/bench_gpu.py: runs on the CPU at a small size, records every kernel and the
checks, imports neither Dask nor XGBoost, and refuses --device gpu without a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
SMALL = ("--rows", "20000", "--features", "6", "--k", "4")
KERNELS = ("read_once", "kmeans_pass", "gmm_estep_diag", "gmm_estep_full", "som_pass", "preprocess")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cpu_run_records_every_kernel(tmp_path):
    out = tmp_path / "r.json"
    p = _run(*SMALL, "--repeats", "2", "--device", "cpu", "--out", str(out))
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    assert res["devices"] == ["cpu"]
    assert (res["rows"], res["features"], res["k"], res["repeats"]) == (20000, 6, 4, 2)
    cpu = res["timings"]["cpu"]
    for key in KERNELS:
        assert cpu[key]["median_s"] > 0, key
        assert len(cpu[key]["repeats_s"]) == 2, key
    assert cpu["read_once"]["bytes"] == 20000 * 6 * 4
    assert cpu["kmeans_pass"]["ratio_to_read_once"] > 0
    km = res["checks"]["kmeans"]
    ref = km["cpu_vs_float64_reference"]
    assert ref["counts_total"] == 20000 and ref["ok"] is True and km["ok"] is True
    assert res["hardware"]["cores"] >= 1 and "gpu_details" in res["hardware"]
    assert "numpy" in res["libraries"] and "python" in res["libraries"]
    assert res["timestamp"] and "bench_gpu.py" in res["command"]
    assert "| kmeans_pass |" in p.stdout


def test_gpu_without_gpu_exits_2(tmp_path):
    from bigseg import backend

    out = tmp_path / "g.json"
    p = _run(*SMALL, "--repeats", "1", "--device", "gpu", "--out", str(out))
    if backend.gpu_count() > 0:
        assert p.returncode == 0, p.stderr
        assert "gpu" in json.loads(out.read_text())["timings"]
    else:
        assert p.returncode == 2
        assert "GPU" in p.stderr
        assert not out.exists()


def test_imports_neither_dask_nor_xgboost():
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1], run_name='bench_gpu'); "
        "bad = [m for m in ('dask', 'distributed', 'xgboost') if m in sys.modules]; "
        "assert not bad, bad"
    )
    # as `python benchmarks/bench_gpu.py` runs it: its own directory on the path
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(SCRIPT.parent)]))
    p = subprocess.run(
        [sys.executable, "-c", code, str(SCRIPT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr


FAKE_GPU = """
import sys, types
import numpy as np
sys.path.insert(0, "benchmarks")
import bench_gpu
from bigseg import backend
from bigseg.segment import gmm, kmeans, som

fake = types.ModuleType("fakecupy")
fake.__dict__.update({k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
fake.__version__ = "fake"

class Device:
    id = 0
    def synchronize(self):
        pass

fake.cuda = types.SimpleNamespace(Device=Device, runtime=types.SimpleNamespace(
    getDeviceProperties=lambda i: {"name": b"FakeGPU", "totalGlobalMem": 1},
    runtimeGetVersion=lambda: 1, driverGetVersion=lambda: 1))
GPU = backend.Backend("gpu", fake, "")
real = backend.resolve
for m in (backend, gmm, kmeans, som):
    m.resolve = lambda d="auto": GPU if d == "gpu" else real(d)
backend.gpu_count = lambda: 1
sys.exit(bench_gpu.main(sys.argv[1:]))
"""


def test_gpu_code_path_with_a_numpy_stand_in(tmp_path):
    """The GPU branch (device copy, sync, fused and unfused pass, checks, ratios) run with
    a NumPy module posing as CuPy: the bigseg kernels take their CuPy code paths."""
    script, out = tmp_path / "fake_gpu.py", tmp_path / "f.json"
    script.write_text(FAKE_GPU)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NUMBA_ENABLE_CUDASIM", None)  # the simulator would run the fused kernel slowly
    p = subprocess.run(
        [sys.executable, str(script), *SMALL, "--repeats", "1", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    assert res["devices"] == ["cpu", "gpu"]
    gpu = res["timings"]["gpu"]
    for key in (*KERNELS, "kmeans_pass_unfused"):
        assert gpu[key]["median_s"] > 0, key
    assert isinstance(gpu["kmeans_pass"]["target_met"], bool)
    assert res["device_notes"]["gpu"]["host_to_device_copy"]["bytes"] == 20000 * 6 * 4
    assert "fused_kernel_ran" in res["device_notes"]["gpu"]
    checks = res["checks"]
    assert checks["kmeans"]["ok"] and checks["som_pass"]["ok"]
    assert checks["gmm_estep_diag"]["ok"] and checks["gmm_estep_full"]["ok"]
    assert checks["preprocess"]["ok"]
    assert set(res["ratios"]["gpu_speedup"]) >= set(KERNELS)
