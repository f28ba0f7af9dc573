#!/usr/bin/env bash
# LatentLM diffusion-head modulation on a GPU machine, from the repo root: the `gpu` tests of
# tests/kernels/test_adaln.py, then correctness and forward / forward+backward timings of adaln_modulate and
# gated_residual at N = 2048 and 16384 rows, D in 768, 1024, 1536, bf16 and fp32: Triton vs the eager PyTorch
# reference vs torch.compile of the reference (benchmarks/gpu/adaln_bench.py). Fresh machine with only python: builds
# .venv-gpu once (torch with CUDA comes from the package registry). Exit status: that of the gpu tests (benchmark
# failures are printed, not fatal).
set -uo pipefail
cd "$(dirname "$0")/../.."

source benchmarks/gpu/_setup.sh

# At most 150 + 270 = 420 s once the venv exists (Triton compiles each kernel variant on its first call; the benchmark
# stops starting torch.compile compilations after 150 s of its own).
echo "== pytest -m gpu tests/kernels/test_adaln.py"
timeout 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_adaln.py
tests_status=$?
[ $tests_status -eq 124 ] && echo "gpu tests: timed out after 150 s"

echo "== benchmark"
timeout 270 "$PY" benchmarks/gpu/adaln_bench.py || echo "benchmark failed or timed out (status $?)"
exit $tests_status
