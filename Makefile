# Every target sets up .venv first (CPU torch 2.13.0 before anything else, so no CUDA download).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
# make compare: the newest loss-comparison sweep unless SWEEP names one
SWEEP  ?=

.PHONY: setup test test-all lint format demo data tensorboard compare bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e ".[dev]"
	touch $@

test: setup            ## fast test suite (no real data needed)
	$(BIN)/python -m pytest

test-all: setup        ## everything, slow end-to-end tests included
	$(BIN)/python -m pytest -m ""

lint: setup
	$(BIN)/ruff check ser tests bench
	$(BIN)/ruff format --check ser tests bench

format: setup
	$(BIN)/ruff check --fix ser tests bench
	$(BIN)/ruff format ser tests bench

demo: setup            ## train + test on the built-in synthetic corpus
	$(BIN)/python -m ser.train data=demo

data: setup            ## data report of data/ (CREMA-D and SAVEE)
	$(BIN)/python -m ser.data

tensorboard: setup     ## every run under outputs/ (demo runs under outputs/demo/), every per-epoch image kept
	$(BIN)/tensorboard --logdir outputs/ --samples_per_plugin images=0

compare: setup         ## report of the newest loss-comparison sweep, or of SWEEP=outputs/multirun/<time>/
	$(BIN)/python -m ser.compare $(if $(SWEEP),$(SWEEP),--latest loss_comparison)

bench: setup           ## benchmarks on the real data under data/ (see bench/README.md)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf .pytest_cache .ruff_cache build *.egg-info
