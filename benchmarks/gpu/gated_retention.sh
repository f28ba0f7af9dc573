#!/usr/bin/env bash
# Gated retention (YOCO) on a GPU machine, from the repo root: the `gpu` tests of tests/kernels/test_gated_retention.py,
# then forward / forward+backward and decoding-step timings at B=4, T=4096 bf16, H=8 K=128 V=256 and H=4 K=V=256,
# against the PyTorch reference and flash-linear-attention's simple GLA (benchmarks/gpu/gated_retention_bench.py).
# Fresh machine with only python: builds .venv-gpu once (torch with CUDA comes from the package registry).
# Exit status: 3 without a CUDA GPU, else that of the gpu tests (the benchmark's failures are printed, not fatal).
set -uo pipefail
cd "$(dirname "$0")/../.."

# no GPU: say so and stop before building a CUDA venv for nothing
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "no NVIDIA GPU here (nvidia-smi missing or failing): nothing to test or time"
    exit 3
fi

source benchmarks/gpu/_setup.sh
with_fla
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "torch in $VENV sees no CUDA device (a CPU-only torch?): nothing to test or time"; exit 3; }

# At most 240 + 300 = 540 s once the venv exists (Triton compiles and autotunes on the first calls of each K and
# dtype: most of the test time; the benchmark times two shapes).
echo "== pytest -m gpu tests/kernels/test_gated_retention.py"
timeout 240 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_gated_retention.py
tests_status=$?
[ $tests_status -eq 124 ] && echo "gpu tests: timed out after 240 s"

echo "== benchmark"
timeout 300 "$PY" benchmarks/gpu/gated_retention_bench.py || echo "benchmark failed or timed out (status $?)"
exit $tests_status
