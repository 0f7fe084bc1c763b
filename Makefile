# The README's two commands are `make demo` and `make test`; each sets up what it needs first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.neocompress-setup

.PHONY: setup demo test bench lint lock clean

setup: $(STAMP)

# Re-runs only when the dependency files change, so a second `make setup` is a no-op in seconds.
$(STAMP): pyproject.toml constraints.txt tools/torchvision_cpu_shim.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/python tools/install_shim.py
	$(BIN)/python -c "import torch, torchvision, transformers, neocompress; assert torch.version.cuda is None"
	touch $(STAMP)

demo: setup
	$(BIN)/python -m neocompress.cli.main apply recipes/tiny.yaml --force
	$(BIN)/python -m neocompress.cli.main generate out/tiny --prompt "a red circle moving left on a grey background" --output out/tiny-demo --force

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m pytest -q -m slow
	$(BIN)/python benchmarks/run.py --output benchmarks/results.json

lint: setup
	$(BIN)/ruff check neocompress tests benchmarks tools

# Regenerate the full pin set from a working venv (run after changing pyproject.toml).
lock: setup
	$(BIN)/pip freeze --exclude-editable --exclude neocompress | sort > constraints.lock.txt

clean:
	rm -rf $(VENV) out
