# Sourced by the benchmarks/gpu/*.sh scripts, from the repo root: build .venv-gpu once on a fresh machine with only
# python (torch with CUDA comes from the package registry), set PY to its python, print the GPU and the versions.
# `with_fla` installs flash-linear-attention for comparisons only: --no-deps, so it never swaps the torch / triton
# just installed.
PYTHON=${PYTHON:-python3}
VENV=.venv-gpu
if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PYTHON" -m venv "$VENV" && "$VENV/bin/pip" install -q --upgrade pip && "$VENV/bin/pip" install -q -e '.[dev]' \
        || { echo "could not build $VENV"; exit 2; }
fi
PY="$VENV/bin/python"

with_fla() {
    "$PY" -c "import fla" >/dev/null 2>&1 \
        || timeout 120 "$VENV/bin/pip" install -q --no-deps flash-linear-attention einops || true
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'triton', triton.__version__)"
