# The two set-up commands of the README: `make demo` (the main job) and `make test` (all tests).
# Each creates its own virtual environment and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch==2.13.0 is the CPU build; any other request may pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[local,dev,hf]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/hydra-vertex run --local examples/digits/job.yaml --output SUMMARY.json

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .hydra-vertex outputs wandb
