#!/usr/bin/env bash
# The GPU checks in one run, ON the device machine, from the project root.
# Prepare here (CPU machine), from the project root:
#   ../shared/device/wheels.sh "dask[distributed,dataframe,array]" dask-ml xgboost-cpu vaderSentiment pydantic
#   (wheels.sh also copies this script into .whl/)
# Then run with the device tool: command `bash tools/gpu-check.sh`, carry [".whl"], timeout ~480 s.
# (This copy is the project's: ../shared/device/gpu-check.sh is reset each session.)
# Everything it measures lands in $OUT (fetched back): nvidia-smi, pytest -m gpu, bench_gpu.py JSON,
# a small `bigseg run --device gpu`. Each step has its own time limit so one hang cannot eat the rest.
set -u
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  >"$OUT/install.txt" 2>&1 || echo "wheel install failed (see install.txt)"
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
python3 - >"$OUT/versions.txt" 2>&1 <<'PY'
import importlib
for m in ("cupy", "numba", "numba_cuda", "dask", "distributed", "xgboost", "pyarrow", "sklearn"):
    try: print(m, importlib.import_module(m).__version__)
    except Exception as e: print(m, "missing:", type(e).__name__, e)
PY
step() { local name=$1 limit=$2; shift 2; local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1; local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$OUT/summary.txt"; }
# only the files that hold gpu tests: the rest are slow to collect and need packages the wheels do not carry
step pytest-gpu 180 python3 -m pytest -q -m gpu -p no:cacheprovider $(grep -l "mark.gpu" tests/*.py)
[ -f benchmarks/bench_gpu.py ] && step bench-gpu 150 python3 benchmarks/bench_gpu.py --rows 10000000 --features 16 --k 8 --repeats 3 --device gpu --out "$OUT/gpu-kernels.json"
step run-gpu 150 python3 -m bigseg.cli demo --customers 50000 --device gpu --out /tmp/gpu-demo
cp /tmp/gpu-demo/runs/*/metrics.json "$OUT/" 2>/dev/null  # each run keeps its metrics under runs/<id>/
cat "$OUT/summary.txt"
