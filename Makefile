# Orchestrator of the inference zoo: one pattern of targets serves every model.
#
#   make test                                   set up .venv and run the test suite
#   make mobilenetv1 DATA=<dir> BS="1 4 16" N=300 WEIGHTS=random SOC=cpu
#
# Variables (DESIGN.md §3): BS (one or several batch sizes), SOC (cpu | auto | Ascend...),
# DATA (folder with val/ and val_label.txt), N (first N images; unset = all), WEIGHTS
# (unset = published file, a path, or random), RUNNER (local | docker: each step in its image,
# see `make images`), DEVICE, LOOP, WARMUP.
# Every step writes a file under build/ (see mk/pipeline.mk): a second run does no work.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

MODELS := $(sort $(patsubst models/%/model.yaml,%,$(wildcard models/*/model.yaml)))

BS      ?= 1
SOC     ?= cpu
DATA    ?=
N       ?=
WEIGHTS ?=
RUNNER  ?= local
DEVICE  ?= 0
LOOP    ?= 20
WARMUP  ?= 2
export BS SOC DATA N WEIGHTS RUNNER DEVICE LOOP WARMUP

PYTHON ?= python3
VENV   := .venv
PY     := $(abspath $(VENV))/bin/python
export PY

.PHONY: all test venv clean help readme compare images $(MODELS)

help:
	@echo "make test                      run the test suite (creates .venv)"
	@echo "make <model> DATA=<dir> [BS=\"1 4\"] [N=300] [WEIGHTS=random|path] [SOC=cpu|auto|Ascend310P3]"
	@echo "make images [IMAGE_MODELS=...] build the microtool images (RUNNER=docker)"
	@echo "models: $(MODELS)"

venv: $(VENV)/.installed

# The virtual environment, from the pinned requirements (the model folders pin the same).
$(VENV)/.installed: requirements.txt $(wildcard models/*/requirements.txt)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/python -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: -d $(VENV)/sdists pretrainedmodels==0.7.4 timm==0.4.5
	touch $@

# CI=true runs the slow (end-to-end, export) tests as well.
test: venv
	$(PY) -m pytest $(if $(filter true 1 yes,$(CI)),,-m "not slow") $(PYTEST_ARGS)

# One model, every batch size in BS: arguments are checked once, then one sub-make each.
$(MODELS): venv
	@case "$(RUNNER)" in local|docker) ;; *) echo "error: RUNNER=$(RUNNER): unknown runner; use local or docker" >&2; exit 2;; esac
	@for bs in $(BS); do [[ "$$bs" =~ ^[1-9][0-9]*$$ ]] || { echo "error: BS=$$bs: expected positive batch sizes, e.g. BS=\"1 4 16\"" >&2; exit 2; }; done
	@[[ -z "$(N)" || "$(N)" =~ ^[1-9][0-9]*$$ ]] || { echo "error: N=$(N): expected a positive number of images, or leave it unset for all" >&2; exit 2; }
	@$(PY) -m npuzoo.dataset check "$(DATA)" >/dev/null
	@soc=$$($(PY) -m npuzoo.soc resolve "$(SOC)" --device "$(DEVICE)"); \
	if [[ "$(RUNNER)" == docker ]]; then $(MAKE) --no-print-directory images IMAGE_MODELS=$@ SOC=$$soc; fi; \
	for bs in $(BS); do \
	  $(MAKE) --no-print-directory -f mk/pipeline.mk MODEL=$@ BS=$$bs SOC=$$soc publish; \
	done

# RUNNER=docker: the microtool images (images/, mk/docker.mk). Builds the shared images and
# those of IMAGE_MODELS (default: every model); each is tagged with a hash of what goes in, so
# a second run builds nothing. Needs an engine (DOCKER_HOST) and the Debian client (DOCKER).
# CI, with no registry: make images BASE_IMAGE=local/debian:bookworm (images/local-base.sh).
DOCKER       ?= /usr/bin/docker
IMAGE_MODELS ?= $(MODELS)
export DOCKER IMAGE_MODELS

images: venv
	@$(MAKE) --no-print-directory -f mk/docker.mk images

# READMEs and tables are rendered from reports/ and model.yaml alone (no model is run).
readme: venv
	$(PY) -m npuzoo.readme

# Run-over-run changes recorded in reports/.
compare: venv
	$(PY) -m npuzoo.report compare

clean:
	rm -rf build
