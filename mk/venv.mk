# The virtual environment (called by the top-level Makefile under `flock .venv.lock`, so two
# concurrent `make` runs never run pip at the same time; the second finds the stamp fresh).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

# pip shows its progress on a terminal and stays quiet in logs.
PIP_QUIET := $(if $(MAKE_TERMOUT),,--quiet)
# PyPI's torch for Linux x86_64 pulls about 4.2 GB of CUDA wheels, which a CPU/NPU project never
# uses; PyTorch's own CPU index serves the same version without them, where it can be reached:
#   make venv TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (The top-level Makefile hands the value over as NPUZOO_TORCH_INDEX; it reaches pip quoted.)
TORCH_PINS  := $(shell grep -E '^(torch|torchvision)==' requirements.txt)

$(VENV)/.installed: requirements.txt $(wildcard models/*/requirements.txt)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "venv: installing the pinned requirements into $(VENV) (first time: a few minutes, about 6 GB with PyPI's torch)"
	$(if $(value NPUZOO_TORCH_INDEX),$(VENV)/bin/python -m pip install $(PIP_QUIET) --disable-pip-version-check --index-url "$$NPUZOO_TORCH_INDEX" $(TORCH_PINS))
	$(VENV)/bin/python -m pip install $(PIP_QUIET) --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/python -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: -d $(VENV)/sdists pretrainedmodels==0.7.4 timm==0.4.5
	touch $@
