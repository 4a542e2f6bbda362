# Every target creates .venv and installs what it needs when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where pip finds torch. Empty: pip's configured indexes (on the project's machines they hold the
# CPU wheel of torch 2.13.0). On a plain Linux machine PyPI's torch is the multi-GB CUDA build:
# `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu` takes the CPU build instead.
TORCH_INDEX ?=

.PHONY: install demo test check bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first and pinned, so the package's torch range is already satisfied (see TORCH_INDEX).
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	mkdir -p runs
	$(BIN)/sae-stitch demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

check: $(STAMP)
	$(BIN)/ruff check sae_lens_stitch tests benchmarks tools
	$(BIN)/ruff format --check sae_lens_stitch tests benchmarks tools
	$(BIN)/basedpyright

docs: $(STAMP)
	$(BIN)/python tools/gen_api_docs.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) runs build *.egg-info
