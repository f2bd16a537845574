# mtlab — two commands on a fresh machine:
#   make demo   venv + install + the diagonal study at its quick preset (figures + report);
#               make demo STUDY=subspace runs another registered study
#   make test   venv + install + lint (ruff, mypy) + the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: an unpinned torch (or a dependency asking for a newer one) pulls a CUDA build.
TORCH ?= torch==2.13.0
STUDY ?= diagonal
OUT ?= runs/$(STUDY)

.PHONY: demo test lint bench bench-headfirst install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/mtlab reproduce $(STUDY) --preset quick --out $(OUT)
	@echo "open $(OUT)/report.html (or read $(OUT)/report.md)"

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

test: install lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/sweep_diagonal.py

bench-headfirst: install
	$(BIN)/python benchmarks/headfirst_batched.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
