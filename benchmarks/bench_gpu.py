"""GPU kernels next to the CPU numbers of the same machine: read once, K-Means pass, GMM
E-step, SOM pass, preprocessing transform.

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_gpu.py --rows 10000000 --features 16 --k 8

Data: ``rows x features`` float32, the Gaussian mixture of ``bench_kmeans.py`` (its
generator). Per device (``--device cpu,gpu``; default: the CPU, plus the GPU
when one is visible) every kernel runs once untimed (numba compilation, CuPy kernel
caches), then ``--repeats`` times; the median is reported. On the GPU, X is copied to the
device once before any timing (that copy is timed separately and recorded) and every GPU
timing is bracketed by ``cupy.cuda.Device().synchronize()``.

Kernels:

* ``read_once``: one bandwidth-bound reduction over X (``sum`` in float32): the time to
  read the data once from the device's memory; bytes and GB/s recorded.
* ``kmeans_pass``: one Lloyd pass, ``bigseg.segment.kmeans.assign_accumulate`` with
  ``with_labels=False, inertia=False``, centres = ``k`` fixed rows of X (the same on both
  devices). On the GPU also ``kmeans_pass_unfused`` (``fused=False``: the CuPy GEMM form)
  when the function takes ``fused``. The ratio to ``read_once`` on the same device is
  recorded; the issue's GPU target is a ratio <= 3 (``target_met``).
* ``gmm_estep_diag`` / ``gmm_estep_full``: ``bigseg.segment.gmm._block_em`` over all of X
  (k random rows as means, unit covariances, equal weights).
* ``som_pass``: ``bigseg.segment.som._block_bmu_stats`` with a 10 x 10 map (100 units).
* ``preprocess``: ``Preprocessor.transform(df, xp)`` on a pandas DataFrame of the
  features (float64 columns, half of them log1p'd). As in the pipeline, this includes
  stacking the columns on the host and (GPU) the host-to-device copy of the raw float64
  matrix; the result stays on the device.

Correctness checks (recorded under ``checks``): CPU K-Means counts against a float64
NumPy reference; GPU K-Means / SOM counts against the CPU's (at most ``max(1, 1e-5 *
rows)`` rows may change cluster: float32 rounding flips near-ties) and sums (rtol 1e-3);
GMM log-likelihoods CPU vs GPU (rtol 1e-4); the preprocessed matrix CPU vs GPU.

Imports only NumPy, pandas and bigseg's backend, segment and machine modules (CuPy only
through ``bigseg.backend``): no Dask, no XGBoost, so it runs on a machine without them.

Writes ``benchmarks/results/gpu-kernels-<rows>x<features>.json`` (or ``--out``) and prints
a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from bench_kmeans import make_data  # the same data as the K-Means benchmark

from bigseg import backend, machine
from bigseg.segment import gmm as gmm_mod
from bigseg.segment import kmeans as kmeans_mod
from bigseg.segment import som as som_mod
from bigseg.segment.preprocess import Preprocessor

KERNELS = (
    "read_once",
    "kmeans_pass",
    "kmeans_pass_unfused",
    "gmm_estep_diag",
    "gmm_estep_full",
    "som_pass",
    "preprocess",
)
SOM_GRID = (10, 10)


def versions() -> dict[str, str]:
    """bigseg's library versions plus the GPU side's (numba, numba-cuda, CuPy under the
    wheel name that names its CUDA, e.g. cupy-cuda12x)."""
    out = machine.versions(("scipy", "numba", "numba-cuda"))
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith("cupy"):
            out[name] = dist.version
    return out


def cuda_info(xp) -> dict:
    rt = xp.cuda.runtime
    props = rt.getDeviceProperties(xp.cuda.Device().id)
    name = props.get("name", b"")
    return {
        "device_name": name.decode() if isinstance(name, bytes) else str(name),
        "cuda_runtime": rt.runtimeGetVersion(),
        "cuda_driver": rt.driverGetVersion(),
        "total_memory_bytes": int(props.get("totalGlobalMem", 0)),
        "cupy": getattr(xp, "__version__", ""),
    }


# -- timing ----------------------------------------------------------------------------------
def timed(fn, sync, repeats: int):
    """Run ``fn`` once untimed (compilation, caches), then ``repeats`` times between
    ``sync()`` calls. Returns (seconds of each repeat, the last result)."""
    out = fn()
    sync()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times, out


def summary(times: list[float], **extra) -> dict:
    return {"median_s": float(np.median(times)), "repeats_s": [float(t) for t in times], **extra}


def reference_counts(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Cluster sizes of the nearest centre in float64 (plain NumPy, chunked)."""
    C64 = C.astype(np.float64)
    c2 = (C64 * C64).sum(axis=1)
    counts = np.zeros(C.shape[0], np.int64)
    for s in range(0, X.shape[0], 1 << 18):
        x = X[s : s + (1 << 18)].astype(np.float64)
        lab = np.argmin(c2[None, :] - 2.0 * (x @ C64.T), axis=1)
        counts += np.bincount(lab, minlength=C.shape[0])
    return counts


def compare_assign(counts, sums, ref_counts, ref_sums, rows: int) -> dict:
    """Rows that changed cluster (half the L1 distance of the counts) and the sums."""
    counts = np.asarray(counts, np.int64)
    ref_counts = np.asarray(ref_counts, np.int64)
    moved = int(np.abs(counts - ref_counts).sum() // 2)
    allowed = max(1, int(1e-5 * rows))
    out = {"rows_moved": moved, "rows_allowed": allowed, "counts_total": int(counts.sum())}
    ok = moved <= allowed and int(counts.sum()) == rows
    if sums is not None:
        s, r = np.asarray(sums, np.float64), np.asarray(ref_sums, np.float64)
        scale = max(float(np.abs(r).max()), 1e-30)
        out["sums_max_abs_diff_over_max_abs"] = float(np.abs(s - r).max() / scale)
        ok = ok and bool(np.allclose(s, r, rtol=1e-3, atol=1e-3 * scale))
    out["ok"] = bool(ok)
    return out


def gmm_params(X: np.ndarray, k: int, cov_type: str, seed: int = 2):
    """``_block_em``'s ``(p, shift)`` as ``GaussianMixture.fit`` forms them, from k random
    rows as means, unit covariances and equal weights."""
    rng = np.random.default_rng(seed)
    means0 = X[np.sort(rng.choice(X.shape[0], k, replace=False))].astype(np.float64)
    shift = means0.mean(axis=0)
    d = X.shape[1]
    cov = np.ones((k, d)) if cov_type == "diag" else np.repeat(np.eye(d)[None], k, axis=0)
    pc = gmm_mod._precisions_cholesky(cov, cov_type)
    p = gmm_mod._block_params(np.full(k, 1.0 / k), means0 - shift, pc, cov_type)
    return p, shift


def make_frame(X: np.ndarray) -> tuple[pd.DataFrame, Preprocessor]:
    cols = [f"f{i}" for i in range(X.shape[1])]
    df = pd.DataFrame({c: X[:, i].astype(np.float64) for i, c in enumerate(cols)})
    log = cols[: len(cols) // 2]
    prep = Preprocessor.fit_moments(cols, log, [Preprocessor.moments(df, cols, log)])
    return df, prep


def parse_devices(arg: str | None) -> list[str]:
    if not arg:
        return ["cpu", "gpu"] if backend.gpu_count() > 0 else ["cpu"]
    devs = [d.strip() for d in arg.split(",") if d.strip()]
    bad = [d for d in devs if d not in ("cpu", "gpu")]
    if bad or not devs:
        raise SystemExit(f"--device takes cpu, gpu or cpu,gpu; got {arg!r}")
    return list(dict.fromkeys(devs))


def run_device(name, X, C, W, gmm_p, df, prep, args, skip) -> tuple[dict, dict, dict]:
    """Time every kernel on one device. Returns (timings, results kept for the checks,
    device notes)."""
    be = backend.resolve(name)
    xp = be.xp
    reps = args.repeats
    notes: dict = {}
    if be.is_gpu:
        sync = xp.cuda.Device().synchronize
        notes["cuda"] = cuda_info(xp)
        copies = []
        Xd = None
        for _ in range(max(reps, 1)):
            Xd = None
            sync()
            t0 = time.perf_counter()
            Xd = be.asarray(X)
            sync()
            copies.append(time.perf_counter() - t0)
        notes["host_to_device_copy"] = summary(
            copies, bytes=int(X.nbytes), gb_per_s=X.nbytes / np.median(copies) / 1e9
        )
    else:

        def sync():
            return None

        Xd = X
    T: dict = {}
    keep: dict = {}

    if "read_once" not in skip:
        if be.is_gpu:

            def read():
                return xp.sum(Xd, dtype=xp.float32)
        else:

            def read():
                return np.add.reduce(Xd, axis=None, dtype=np.float32)

        t, total = timed(read, sync, reps)
        T["read_once"] = summary(
            t, bytes=int(X.nbytes), gb_per_s=X.nbytes / np.median(t) / 1e9, value=float(total)
        )

    if "kmeans_pass" not in skip:
        Cd = be.asarray(C)
        variants = [("kmeans_pass", {})]
        takes_fused = "fused" in inspect.signature(kmeans_mod.assign_accumulate).parameters
        if be.is_gpu and takes_fused and "kmeans_pass_unfused" not in skip:
            variants.append(("kmeans_pass_unfused", {"fused": False}))
        for key, kw in variants:
            t, out = timed(
                lambda kw=kw: kmeans_mod.assign_accumulate(
                    Xd, Cd, xp, with_labels=False, inertia=False, **kw
                ),
                sync,
                reps,
            )
            T[key] = summary(t)
            keep[key] = (be.to_numpy(out[0]), be.to_numpy(out[1]))
        if be.is_gpu:
            from bigseg.backend import kernels  # noqa: PLC0415 - only to say which path ran

            ran = takes_fused and kernels.fits(C.shape[0], X.shape[1]) and not kernels._broken
            notes["fused_kernel_ran"] = bool(ran)
            if kernels._broken:
                notes["fused_kernel_error"] = kernels._broken[0]

    for ct in ("diag", "full"):
        key = f"gmm_estep_{ct}"
        if key in skip:
            continue
        p, shift = gmm_p[ct]
        t, out = timed(
            lambda p=p, shift=shift, ct=ct: gmm_mod._block_em(Xd, p, shift, ct, name), sync, reps
        )
        T[key] = summary(t, loglik=float(out[3]))
        keep[key] = out

    if "som_pass" not in skip:
        t, out = timed(lambda: som_mod._block_bmu_stats(Xd, W, name), sync, reps)
        T["som_pass"] = summary(t, units=int(W.shape[0]))
        keep["som_pass"] = out

    if "preprocess" not in skip:
        t, out = timed(lambda: prep.transform(df, xp), sync, reps)
        T["preprocess"] = summary(t, includes_host_to_device_copy=be.is_gpu)
        keep["preprocess"] = be.to_numpy(out)
        del out
    return T, keep, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--device",
        default=None,
        help="cpu, gpu or cpu,gpu (default: cpu, plus gpu when one is visible)",
    )
    ap.add_argument(
        "--skip", default="", help="comma list of kernels to skip: " + ",".join(KERNELS)
    )
    ap.add_argument(
        "--out",
        default=None,
        help="result file (default benchmarks/results/gpu-kernels-<rows>x<features>.json)",
    )
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    unknown = skip - set(KERNELS)
    if unknown:
        ap.error(f"unknown kernels in --skip: {sorted(unknown)}")
    devices = parse_devices(args.device)
    if "gpu" in devices:
        try:
            backend.resolve("gpu")
        except Exception as e:  # noqa: BLE001 - DeviceError: say why and stop
            print(f"bench_gpu: no usable GPU on this machine: {e}", file=sys.stderr)
            return 2
    if args.rows < max(args.k, SOM_GRID[0] * SOM_GRID[1]):
        ap.error("--rows must be at least max(k, 100)")

    t0 = time.perf_counter()
    X = make_data(args.rows, args.features, args.k)
    rng = np.random.default_rng(1)
    C = X[np.sort(rng.choice(args.rows, args.k, replace=False))].copy()
    units = SOM_GRID[0] * SOM_GRID[1]
    W = X[np.sort(rng.choice(args.rows, units, replace=False))].copy()
    gmm_p = {ct: gmm_params(X, args.k, ct) for ct in ("diag", "full")}
    df, prep = make_frame(X) if "preprocess" not in skip else (None, None)
    print(
        f"data: {args.rows} x {args.features} float32 ({X.nbytes / 1e6:.0f} MB), made in "
        f"{time.perf_counter() - t0:.1f} s; devices {','.join(devices)}",
        flush=True,
    )

    timings, kept, notes = {}, {}, {}
    for dev in devices:
        t1 = time.perf_counter()
        timings[dev], kept[dev], notes[dev] = run_device(dev, X, C, W, gmm_p, df, prep, args, skip)
        print(f"{dev}: done in {time.perf_counter() - t1:.1f} s", flush=True)

    # -- checks --------------------------------------------------------------------------
    checks: dict = {}
    cpu = kept.get("cpu", {})
    if "kmeans_pass" not in skip:
        ref = reference_counts(X, C)
        km: dict = {}
        if "kmeans_pass" in cpu:
            km["cpu_vs_float64_reference"] = compare_assign(
                cpu["kmeans_pass"][1], None, ref, None, args.rows
            )
        for key in ("kmeans_pass", "kmeans_pass_unfused"):
            g = kept.get("gpu", {}).get(key)
            if g is None:
                continue
            if "kmeans_pass" in cpu:
                km[f"gpu_{key}_vs_cpu"] = compare_assign(
                    g[1], g[0], cpu["kmeans_pass"][1], cpu["kmeans_pass"][0], args.rows
                )
            km[f"gpu_{key}_vs_float64_reference"] = compare_assign(g[1], None, ref, None, args.rows)
        km["ok"] = all(v["ok"] for v in km.values())
        checks["kmeans"] = km
    for ct in ("diag", "full"):
        key = f"gmm_estep_{ct}"
        if key in cpu and key in kept.get("gpu", {}):
            a, b = cpu[key], kept["gpu"][key]
            checks[key] = {
                "loglik_cpu": float(a[3]),
                "loglik_gpu": float(b[3]),
                "loglik_rel_diff": abs(a[3] - b[3]) / max(abs(a[3]), 1e-30),
                "nk_max_abs_diff": float(np.abs(np.asarray(a[0]) - np.asarray(b[0])).max()),
                "ok": bool(np.isclose(a[3], b[3], rtol=1e-4)),
            }
    if "som_pass" in cpu and "som_pass" in kept.get("gpu", {}):
        a, b = cpu["som_pass"], kept["gpu"]["som_pass"]
        checks["som_pass"] = compare_assign(b[1], b[0], a[1], a[0], args.rows)
        checks["som_pass"]["inertia_rel_diff"] = abs(a[2] - b[2]) / max(abs(a[2]), 1e-30)
    if "preprocess" in cpu and "preprocess" in kept.get("gpu", {}):
        a, b = cpu["preprocess"], kept["gpu"]["preprocess"]
        diff = float(np.abs(a - b).max())
        checks["preprocess"] = {"max_abs_diff": diff, "ok": bool(diff <= 1e-4)}

    # -- ratios ----------------------------------------------------------------------------
    ratios: dict = {"gpu_speedup": {}, "kmeans_pass_over_read_once": {}}
    for dev, T in timings.items():
        if "read_once" not in T:
            continue
        r1 = T["read_once"]["median_s"]
        for key in ("kmeans_pass", "kmeans_pass_unfused"):
            if key in T:
                ratio = T[key]["median_s"] / r1
                ratios["kmeans_pass_over_read_once"][f"{dev}/{key}"] = ratio
                T[key]["ratio_to_read_once"] = ratio
                if dev == "gpu":
                    T[key]["target_met"] = bool(ratio <= 3.0)
    if "cpu" in timings and "gpu" in timings:
        for key, v in timings["gpu"].items():
            c = timings["cpu"].get(key) or (
                timings["cpu"].get("kmeans_pass") if key == "kmeans_pass_unfused" else None
            )
            if c:
                ratios["gpu_speedup"][key] = c["median_s"] / v["median_s"]
    target = {}
    if "gpu" in timings:
        target = {k: v.get("target_met") for k, v in timings["gpu"].items() if "target_met" in v}

    cmd = (
        f"python benchmarks/bench_gpu.py --rows {args.rows} --features {args.features} "
        f"--k {args.k} --repeats {args.repeats} --device {','.join(devices)}"
    )
    if skip:
        cmd += f" --skip {','.join(sorted(skip))}"
    res = {
        "benchmark": "gpu kernels vs cpu",
        "command": cmd,
        "rows": args.rows,
        "features": args.features,
        "k": args.k,
        "som_units": units,
        "repeats": args.repeats,
        "devices": devices,
        "data_bytes": int(X.nbytes),
        "timings": timings,
        "device_notes": notes,
        "ratios": ratios,
        "kmeans_gpu_target": {
            "rule": "GPU K-Means pass <= 3 x read_once on the GPU",
            "met": target,
        },
        "checks": checks,
        "notes": [
            "median of --repeats runs after one untimed warm-up run per kernel and device",
            "GPU: X copied to the device once before timing (device_notes.gpu."
            "host_to_device_copy); every GPU timing is bracketed by Device().synchronize()",
            "preprocess includes stacking the DataFrame columns on the host and, on the GPU, "
            "the host-to-device copy of the raw float64 matrix, as in the pipeline",
            "CPU K-Means and SOM passes are one compiled numba call (one thread); GMM uses "
            "NumPy BLAS",
        ],
        "hardware": machine.hardware(),
        "libraries": versions(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    out = Path(args.out or f"benchmarks/results/gpu-kernels-{args.rows}x{args.features}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")

    print(f"\nwrote {out}\n")
    print("| kernel | CPU s | GPU s | GPU speedup | pass / read once |")
    print("|---|---|---|---|---|")
    cpu_t, gpu_t = timings.get("cpu", {}), timings.get("gpu", {})

    def fmt(v, spec=".4f"):
        return "" if v is None else format(v, spec)

    for key in KERNELS:
        c, g = cpu_t.get(key), gpu_t.get(key)
        if c is None and g is None:
            continue
        sp = ratios["gpu_speedup"].get(key)
        rr = ", ".join(
            f"{dev} {x['ratio_to_read_once']:.2f}"
            for dev, x in (("cpu", c), ("gpu", g))
            if x and "ratio_to_read_once" in x
        )
        print(
            f"| {key} | {fmt(c and c['median_s'])} | {fmt(g and g['median_s'])} | "
            f"{fmt(sp, '.1f')} | {rr} |"
        )
    for dev, T in timings.items():
        if "read_once" in T:
            r = T["read_once"]
            print(
                f"\nread once ({dev}): {r['bytes'] / 1e6:.0f} MB in {r['median_s'] * 1e3:.2f} ms "
                f"= {r['gb_per_s']:.1f} GB/s"
            )
    if "gpu" in notes and "host_to_device_copy" in notes["gpu"]:
        h = notes["gpu"]["host_to_device_copy"]
        print(f"host -> device copy: {h['median_s'] * 1e3:.1f} ms = {h['gb_per_s']:.1f} GB/s")
    if target:
        print(f"GPU K-Means target (pass <= 3 x read once): {target}")
    if checks:
        print("checks ok: " + ", ".join(f"{k}={v.get('ok')}" for k, v in checks.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
