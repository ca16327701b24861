# The virtual environment (called by the top-level Makefile under `flock .venv.lock`, so two
# concurrent `make` runs never run pip at the same time; the second finds the stamp fresh).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

$(VENV)/.installed: requirements.txt $(wildcard models/*/requirements.txt)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/python -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: -d $(VENV)/sdists pretrainedmodels==0.7.4 timm==0.4.5
	touch $@
