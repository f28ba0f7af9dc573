#!/usr/bin/env bash
# Retention on a GPU machine, from the repo root: the `gpu` tests of tests/kernels/test_retention.py, then
# forward / forward+backward timings at B=4, T=4096, H=8, K=128, V=256 bf16 (benchmarks/gpu/retention_bench.py).
# Fresh machine with only python: builds .venv-gpu once (torch with CUDA comes from the package registry).
# Exit status: that of the gpu tests (the benchmark's failures are printed, not fatal).
set -uo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
VENV=.venv-gpu
if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PYTHON" -m venv "$VENV" && "$VENV/bin/pip" install -q --upgrade pip && "$VENV/bin/pip" install -q -e '.[dev]' \
        || { echo "could not build $VENV"; exit 2; }
fi
PY="$VENV/bin/python"

# flash-linear-attention for the comparison only: --no-deps so it never swaps the torch / triton just installed.
if ! "$PY" -c "import fla" >/dev/null 2>&1; then
    timeout 120 "$VENV/bin/pip" install -q --no-deps flash-linear-attention einops || true
fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"

# At most 180 + 240 = 420 s once the venv exists (Triton compiles and autotunes on the first calls of each shape).
echo "== pytest -m gpu tests/kernels/test_retention.py"
timeout 180 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_retention.py
tests_status=$?
[ $tests_status -eq 124 ] && echo "gpu tests: timed out after 180 s"

echo "== benchmark"
timeout 240 "$PY" benchmarks/gpu/retention_bench.py || echo "benchmark failed or timed out (status $?)"
exit $tests_status
