# The two set-up commands of the README: `make demo` (the main job) and `make test` (all tests).
# Both use .venv: `make demo` installs only what the demo needs (the `local` extra), `make test`
# everything (adding the dev and hf extras); a stamp file records each.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(DEMO_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	# torch==2.13.0 is the CPU build; any other request may pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[local]"
	touch $(DEMO_STAMP)

$(STAMP): $(DEMO_STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[local,dev,hf]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/hydra-vertex run examples/digits/job.yaml --output SUMMARY.json

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .hydra-vertex outputs wandb

# Re-pin constraints.txt to what the current .venv holds (after changing dependencies).
constraints: $(STAMP)
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
