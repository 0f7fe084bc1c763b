# The README's two commands are `make demo` and `make test`; each sets up what it needs first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.neocompress-setup

.PHONY: setup demo test bench quality lint lock clean

setup: $(STAMP)

# Re-runs only when the dependency files change, so a second `make setup` is a no-op in seconds.
$(STAMP): pyproject.toml constraints.txt tools/torchvision_cpu_shim.py tools/install_shim.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/python tools/install_shim.py
	$(BIN)/python -c "import torch, torchvision, transformers, neocompress; assert torch.version.cuda is None"
	touch $(STAMP)

demo: setup
	$(BIN)/neocompress plan recipes/tiny.yaml
	$(BIN)/neocompress apply recipes/tiny.yaml --force --time
	$(BIN)/neocompress generate out/tiny --output out/tiny-video --force
	$(BIN)/neocompress run-bundle out/tiny/bundles/onnxruntime --output out/tiny-bundle-video --force \
		-p "a red circle moving left slowly on a grey background" -p "a blue square moving up quickly on a white background"
	@echo "output: out/tiny (pipeline, report.md, figures/, bundles/onnxruntime, bundles/hexagon), out/tiny-video (torch)"
	@echo "        and out/tiny-bundle-video (generated from the onnxruntime bundle alone)"

test: setup
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

# Slow tests run here, not in `make test` (pytest exits 5 when none are selected: that is fine).
bench: setup
	$(BIN)/python -m pytest -q -m slow -o addopts="-p no:cacheprovider" || [ $$? -eq 5 ]
	$(BIN)/python benchmarks/run.py --output benchmarks/results.json
	$(BIN)/python benchmarks/substitution_speed.py --output benchmarks/substitution_speed.json
	$(BIN)/python benchmarks/step_distill_speed.py --output benchmarks/step_distill_speed.json
	$(BIN)/python benchmarks/recipe_fuzz.py --count 10000 --output benchmarks/results.json

# The Neodragon chain with the budgets quality needs (about 90 min on 2 cores; resumes from .neocompress-cache):
# MiniBench after every pass, the naive baselines, the issue-16 bars; the table goes into benchmarks/results.md.
quality: setup
	$(BIN)/python benchmarks/quality_chain.py --output benchmarks/quality_chain.json

lint: setup
	$(BIN)/ruff check neocompress tests benchmarks tools

# Regenerate the full pin set from a working venv (run after changing pyproject.toml); keeps the header.
lock: setup
	{ grep '^#' constraints.txt; $(BIN)/pip freeze --exclude-editable --exclude neocompress | sort; } > constraints.new
	mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) out
