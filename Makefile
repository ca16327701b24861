# Orchestrator of the inference zoo: one pattern of targets serves every model.
#
#   make test                                   set up .venv and run the test suite
#   make mobilenetv1 DATA=<dir> BS="1 4 16" N=300 WEIGHTS=random SOC=cpu
#
# Variables: BS (one or several batch sizes), SOC (cpu | auto | Ascend...), DATA (folder with
# val/ and val_label.txt), N (first N images; unset = all), WEIGHTS (unset = published file, a
# path, or random), RUNNER (local | docker: each step in its image, see `make images`),
# DEVICE, LOOP, WARMUP, AIPP. npuzoo/run.py checks them all before anything runs.
# Every step writes a file under build/ (see mk/pipeline.mk): a second run does no work.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

MODEL_NAMES := $(sort $(patsubst models/%/model.yaml,%,$(wildcard models/*/model.yaml)))

# The user's values reach npuzoo.run verbatim and are checked there, in one place: Make never
# expands them (`$(value ...)`: a `$(shell ...)` in a value stays text) and never exports them
# itself (exporting a command-line variable expands it). No recipe below splices one in.
USER_VARIABLES := BS SOC DATA N WEIGHTS RUNNER DEVICE LOOP WARMUP AIPP MODELS SHARDS FORCE STRICT
$(foreach v,$(USER_VARIABLES),$(if $(filter undefined,$(origin $(v))),,$(eval export NPUZOO_$(v) := $$(value $(v)))))
unexport $(USER_VARIABLES) $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v)))

PYTHON ?= python3
VENV   := .venv
PY     := $(abspath $(VENV))/bin/python
export PY

.PHONY: all test venv clean help readme compare images $(MODEL_NAMES)

help:
	@echo "make test                      run the test suite (creates .venv)"
	@echo "make <model> DATA=<dir> [BS=\"1 4\"] [N=300] [WEIGHTS=random|path] [SOC=cpu|auto|Ascend310P3]"
	@echo "make images [IMAGE_MODELS=...] build the microtool images (RUNNER=docker)"
	@echo "models: $(MODEL_NAMES)"

venv: $(VENV)/.installed

# The virtual environment, from the pinned requirements (the model folders pin the same).
# One installer at a time (flock): a second `make` waits, then finds it done.
$(VENV)/.installed: requirements.txt $(wildcard models/*/requirements.txt)
	@mkdir -p $(VENV)
	flock $(VENV).lock $(MAKE) --no-print-directory -f mk/venv.mk VENV=$(VENV) PYTHON=$(PYTHON)

# CI=true runs the slow (end-to-end, export) tests as well.
test: venv
	$(PY) -m pytest $(if $(filter true 1 yes,$(CI)),,-m "not slow") $(PYTEST_ARGS)

# One model, every batch size in BS: npuzoo.run checks the variables, takes the model's
# lock, identifies DATA and WEIGHTS by content, then runs mk/pipeline.mk once per batch size.
# `+`: under `make -n` too, where the driver only shows the pipeline's commands (make -n).
$(MODEL_NAMES): venv
	+@$(PY) -m npuzoo.run $@

# RUNNER=docker: the microtool images (images/, mk/docker.mk). Builds the shared images and
# those of IMAGE_MODELS (default: every model); each is tagged with a hash of what goes in, so
# a second run builds nothing. Needs an engine (DOCKER_HOST) and the Debian client (DOCKER).
# CI, with no registry: make images BASE_IMAGE=local/debian:bookworm (images/local-base.sh).
DOCKER       ?= /usr/bin/docker
IMAGE_MODELS ?= $(MODEL_NAMES)
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
