# mmdis: the two commands of the README, plus helpers. Every target bootstraps a local virtual
# environment (.venv) on first use. TORCH_SPEC is installed before the package so that pip does not
# pull a multi-GB CUDA build where a CPU wheel is wanted; GPU users set TORCH_SPEC or install torch
# themselves first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
DATA ?= data
PHANTOM_CASES ?= 24
PHANTOM_SPACING ?= 2.0
export MPLBACKEND := Agg

.PHONY: book test lint env phantom clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[test,book,mha]"
	touch $@

## The main job: build the book from the embedded default data (no download).
book: env
	$(PY) -m mmdis.cli phantom $(DATA)/phantom --cases $(PHANTOM_CASES) --spacing $(PHANTOM_SPACING) \
		--preview book/images/phantom_preview.png
	$(PY) -m mmdis.cli prepare $(DATA)/phantom $(DATA)/cache
	$(VENV)/bin/jupyter-book build . --all --warningiserror --keep-going
	@echo "book: $(CURDIR)/_build/html/index.html"

## The tests: lint, then the whole pytest suite (slow tests included).
test: env
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: env
	$(VENV)/bin/ruff check .

clean:
	rm -rf _build .pytest_cache .ruff_cache
