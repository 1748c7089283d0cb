#!/usr/bin/env bash
# bench/gpu_check.py on a GPU machine that has none of this repo's environment, offline:
# the machine's own python3 (its CUDA torch, pytest, hypothesis, pytest-benchmark,
# pytest-xdist, numpy), this checkout on PYTHONPATH (nothing is installed or built), a fresh
# inductor cache (cold compiles, as CI's first run sees them). Wheels of missing packages,
# where a `.whl/` folder travels with the checkout, are unpacked to /tmp/site first.
#
#   bash bench/gpu_run.sh              # the full check: rows start within 300 s, killed at 420
#   bash bench/gpu_run.sh --quick      # any arguments go to gpu_check.py
#
# Writes $OUT/gpu_check.md (the table for bench/RESULTS.md) and $OUT/gpu_check.log; without
# $OUT, both go to /tmp. Then runs the CPU-side tests of the CUDA paths under this torch.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-/tmp}
export OUT=$OUT_DIR
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$(mktemp -d /tmp/inductor-XXXXXX)}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv 2>&1 || true
"$PY" - <<'EOF'
import importlib
import sys

print("python", sys.version.split()[0], sys.executable)
missing = []
for name in ("torch", "pytest", "hypothesis", "pytest_benchmark", "numpy", "xdist", "triton"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as error:  # noqa: BLE001 - report every missing package at once
        missing.append(name)
        print(f"{name} MISSING: {error}")
import torch

print("cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "devices", torch.cuda.device_count())
if {"torch", "pytest", "hypothesis"} & set(missing):
    sys.exit("cannot run: carry wheels of the missing packages in .whl/ (device README)")
EOF
[ $? -eq 0 ] || exit 2

timeout "${GPU_CHECK_TIMEOUT:-420}" "$PY" bench/gpu_check.py "$@" 2>&1 | tee "$OUT_DIR/gpu_check.log"
status=${PIPESTATUS[0]}
echo "gpu_check.py exit status: $status (0: every row as expected; 1: see the table; 124: timed out)"

# The CPU-side tests of the CUDA paths, under this machine's torch (CI runs another one).
timeout "${TESTS_TIMEOUT:-60}" "$PY" -m pytest tests/test_cuda_paths.py -q -p no:cacheprovider \
    -p no:randomly 2>&1 | tail -15
exit "$status"
