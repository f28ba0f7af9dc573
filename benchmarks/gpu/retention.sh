#!/usr/bin/env bash
# Retention on a GPU machine, from the repo root: the `gpu` tests of tests/kernels/test_retention.py, then
# forward / forward+backward timings at B=4, T=4096, H=8, K=128, V=256 bf16 (benchmarks/gpu/retention_bench.py).
# Fresh machine with only python: builds .venv-gpu once (torch with CUDA comes from the package registry).
# Exit status: that of the gpu tests (the benchmark's failures are printed, not fatal).
set -uo pipefail
cd "$(dirname "$0")/../.."

source benchmarks/gpu/_setup.sh
with_fla

# At most 180 + 240 = 420 s once the venv exists (Triton compiles and autotunes on the first calls of each shape).
echo "== pytest -m gpu tests/kernels/test_retention.py"
timeout 180 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_retention.py
tests_status=$?
[ $tests_status -eq 124 ] && echo "gpu tests: timed out after 180 s"

echo "== benchmark"
timeout 240 "$PY" benchmarks/gpu/retention_bench.py || echo "benchmark failed or timed out (status $?)"
exit $tests_status
