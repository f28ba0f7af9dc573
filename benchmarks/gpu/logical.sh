#!/usr/bin/env bash
# RRL logical layers on a GPU machine, from the repo root: the `gpu` tests of tests/kernels/test_logical.py, then
# forward / forward+backward timings and peak memory at batch 4096, 1024 inputs, 1024 nodes, Triton vs the PyTorch
# reference (benchmarks/gpu/logical_bench.py). Fresh machine with only python: builds .venv-gpu once (torch with
# CUDA comes from the package registry). Exit status: that of the gpu tests (benchmark failures are printed, not fatal).
set -uo pipefail
cd "$(dirname "$0")/../.."

source benchmarks/gpu/_setup.sh

# At most 270 + 180 = 450 s once the venv exists (Triton compiles and autotunes on the first call of each kind,
# dtype and gradient set: most of the test time).
echo "== pytest -m gpu tests/kernels/test_logical.py"
timeout 270 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_logical.py
tests_status=$?
[ $tests_status -eq 124 ] && echo "gpu tests: timed out after 270 s"

echo "== benchmark"
timeout 180 "$PY" benchmarks/gpu/logical_bench.py || echo "benchmark failed or timed out (status $?)"
exit $tests_status
