# Two user-facing targets: `make demo` and `make test`. Everything else is plumbing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
MODELS_FROM ?= ../shared/models
DATA ?= ../shared/data
STAMP := $(VENV)/.ringwatch-deps
# `make demo PORT=8080`; unset: 8000 when free, else any free port (the URL is printed).
PORT ?=

.PHONY: demo test install setup

demo: install
	$(VENV)/bin/ringwatch models install --from $(MODELS_FROM)
	$(VENV)/bin/ringwatch demo --data $(DATA) $(if $(PORT),--port $(PORT))

# tools/setup.sh installs what is missing from Debian's packages (mosquitto, postgresql,
# chromium, ffmpeg, ...) and starts PostgreSQL, or stops here in one line saying what to run.
setup:
	@tools/setup.sh

test: setup install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -W error

install: $(STAMP)
	@# Re-link the package every time: strict editable installs do not see new modules.
	@$(PY) -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip setuptools wheel

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -U "setuptools>=69" wheel
	$(PY) -m pip install -q -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)
