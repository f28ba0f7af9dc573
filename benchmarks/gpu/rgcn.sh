#!/usr/bin/env bash
# R-GCN aggregation (KCF-PLM's weighted relational graph convolution) on a GPU machine, from the repo root: the `gpu`
# tests of tests/kernels/test_rgcn.py (a graph of the ml-100k KG's size, bf16 and fp32), then correctness (relative
# error vs float64), forward / forward+backward timings (torch.cuda.Event) and peak memory on the ml-100k graph and
# a 10x graph, D = O = 64 in 8 blocks, fp32 and bf16: Triton vs the index_add_ reference vs the segment form
# (benchmarks/gpu/rgcn_bench.py). Fresh machine with only python: builds .venv-gpu once (torch with CUDA comes from
# the package registry); the ml-100k files come from the recbole wheel, installed --no-deps if missing (without
# it the benchmark uses a random graph of the same size and says so). Exit status: that of the gpu tests (benchmark
# failures are printed, not fatal).
set -uo pipefail
cd "$(dirname "$0")/../.."

source benchmarks/gpu/_setup.sh

"$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('recbole') is None)" 2>/dev/null \
    || timeout 120 "$VENV/bin/pip" install -q --no-deps "recbole==1.2.1" || echo "recbole not installed"

# At most 150 + 300 = 450 s once the venv exists (Triton compiles each kernel variant on its first call).
echo "== pytest -m gpu tests/kernels/test_rgcn.py"
timeout 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_rgcn.py
tests_status=$?
[ $tests_status -eq 124 ] && echo "gpu tests: timed out after 150 s"

echo "== benchmark"
timeout 300 "$PY" benchmarks/gpu/rgcn_bench.py || echo "benchmark failed or timed out (status $?)"
exit $tests_status
