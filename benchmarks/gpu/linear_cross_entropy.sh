#!/usr/bin/env bash
# Linear cross-entropy on a GPU machine, from the repo root: the `gpu` tests of
# tests/kernels/test_linear_cross_entropy.py (N = 4096, V = 100k, d = 64 / 512, bf16 and fp32), then correctness and
# forward / forward+backward timings and peak memory at N = 4096, V = 100k and 1M, d = 64 and 512, bf16: Triton vs
# the naive logits (eager and torch.compile) vs the chunked PyTorch reference
# (benchmarks/gpu/linear_cross_entropy_bench.py). Fresh machine with only python: builds .venv-gpu once (torch with
# CUDA comes from the package registry). Exit status: that of the gpu tests (benchmark failures are printed, not
# fatal).
set -uo pipefail
cd "$(dirname "$0")/../.."

source benchmarks/gpu/_setup.sh

# At most 150 + 300 = 450 s once the venv exists (Triton compiles each kernel variant on its first call; the benchmark
# stops starting torch.compile compilations after 150 s of its own).
echo "== pytest -m gpu tests/kernels/test_linear_cross_entropy.py"
timeout 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_linear_cross_entropy.py
tests_status=$?
[ $tests_status -eq 124 ] && echo "gpu tests: timed out after 150 s"

echo "== benchmark"
timeout 300 "$PY" benchmarks/gpu/linear_cross_entropy_bench.py || echo "benchmark failed or timed out (status $?)"
exit $tests_status
