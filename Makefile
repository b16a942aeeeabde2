# mmdis: the two commands of the README, plus helpers. Every target bootstraps a local virtual
# environment (.venv) on first use. TORCH_SPEC is installed before the package so that pip does not
# pull a multi-GB CUDA build where a CPU wheel is wanted; GPU users set TORCH_SPEC or install torch
# themselves first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
DATA ?= data
PROFILE ?= cpu
# Where the networks come from: auto (the book models shipped in mmdis/book_models/<profile> when the
# profile has them, else trained), shipped, or retrain.
MODELS ?= auto
# Real data for the book, read where they lie and never copied or written into a notebook: REAL_DATA is a
# labelled dataset folder (e.g. the BraTS 2023 sample) that notebook 08 scores the book models on;
# BRATS2015_SAMPLE is the FLAIR + T1c sample that notebook 01 shows beside the phantom. Empty: skipped.
REAL_DATA ?=
BRATS2015_SAMPLE ?=
NOTEBOOK_ENV := $(if $(REAL_DATA),MMDIS_REAL_DATA=$(abspath $(REAL_DATA))) \
	$(if $(BRATS2015_SAMPLE),MMDIS_BRATS2015_SAMPLE=$(abspath $(BRATS2015_SAMPLE)))
export MPLBACKEND := Agg

.PHONY: book test lint env results reproduce book-models notebooks html check-book browser clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[test,book,mha]"
	touch $@

## The main job: build the book from the embedded default data (no download) and the shipped book
## models (no training; MODELS=retrain trains them first). Every step reuses finished work, so a second
## run only rebuilds the HTML.
book: env
	$(PY) -m mmdis.cli phantom $(DATA)/preview --cases 1 --spacing 2 --overwrite \
		--preview book/images/phantom_preview.png
	$(MAKE) results notebooks html PROFILE=$(PROFILE) MODELS=$(MODELS) REAL_DATA=$(REAL_DATA) \
		BRATS2015_SAMPLE=$(BRATS2015_SAMPLE)
	@echo "book: $(CURDIR)/_build/html/index.html"

## Evaluate every method (phantom -> models -> results/$(PROFILE)); the models as MODELS says.
results: env
	$(PY) -m mmdis.cli reproduce --profile $(PROFILE) --models $(MODELS) --work work/$(PROFILE) \
		--results results/$(PROFILE)

## Retrain every method from scratch with the recorded command, then evaluate.
reproduce: env
	$(PY) -m mmdis.cli reproduce --profile $(PROFILE) --models retrain --work work/$(PROFILE) \
		--results results/$(PROFILE)

## Maintainers: retrain, then export the runs as the shipped book models with the training-budget study.
book-models: reproduce
	$(PY) data_scripts/export_book_models.py --profile $(PROFILE) --work work/$(PROFILE)

## Execute the notebooks with papermill into book/notebooks (they reuse the reproduction).
notebooks: env
	$(NOTEBOOK_ENV) $(PY) -m mmdis.cli notebooks --profile $(PROFILE) --models $(MODELS)

## Render the executed notebooks and pages; warnings are errors.
html: env
	$(VENV)/bin/jupyter-book build . --all --warningiserror --keep-going

## Open every page in headless Chromium (Debian's chromium and chromium-driver, installed if missing):
## maths typeset by the bundled MathJax, no raw table or maths, images loaded, no error output; one
## full-page screenshot per page in _build/screenshots/.
check-book: env browser
	$(PY) data_scripts/check_book.py _build/html

browser:
	test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

## The tests: lint, the whole pytest suite (slow tests and the notebooks under nbval included), then
## the book built strictly from the smoke profile's results and checked in a browser.
test: env browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q
	$(MAKE) notebooks html check-book PROFILE=smoke REAL_DATA=$(REAL_DATA) BRATS2015_SAMPLE=$(BRATS2015_SAMPLE)

lint: env
	$(VENV)/bin/ruff check .

clean:
	rm -rf _build .pytest_cache .ruff_cache
