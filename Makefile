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

override COMMAND_LINE := $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v)))
include mk/outside.mk
# Every variable of this file is its own: `override`, so that no command-line value replaces one.
override SHELL := /bin/bash
override .SHELLFLAGS := -eo pipefail -c

# A checkout whose path has a space: Make splits it in every recipe, so nothing could run.
# Refused first, in one line (RUNNER=docker mounts the path as is and refuses more characters).
ifneq ($(words $(CURDIR)),1)
override CHECKOUT_ERROR = @printf 'error: %s: the checkout path has a space, which Make splits; move or clone the repository to a path without one\n' '$(subst ','\'',$(CURDIR))' >&2; exit 2
.DEFAULT_GOAL := checkout-path
checkout-path:
	$(CHECKOUT_ERROR)
.DEFAULT:
	$(CHECKOUT_ERROR)
else

override MODEL_NAMES := $(sort $(patsubst models/%/model.yaml,%,$(wildcard models/*/model.yaml)))

# The user's values reach npuzoo.run verbatim and are checked there, in one place: Make never
# expands them (mk/outside.mk) nor exports them under their own names. No recipe below splices
# one in.
override USER_VARIABLES := BS SOC DATA N WEIGHTS RUNNER DEVICE LOOP WARMUP AIPP MODELS SHARDS \
  FORCE STRICT TORCH_INDEX PRECISION CALIB CALIB_DATA BACKEND STREAMS PERF_SECONDS TUNE
$(foreach v,$(USER_VARIABLES),$(if $(filter undefined,$(origin $(v))),,$(eval export NPUZOO_$(v) := $$(value $(v)))))
# The images' settings (mk/docker.mk checks them) reach the image builds that npuzoo.run
# starts through the environment, verbatim; no other command-line value is exported.
override DOCKER_VARIABLES := BASE_IMAGE ASCEND_BASE_IMAGE IMAGE_REPO DOCKER_NET_ONLINE \
  DOCKER_RUN_ARGS DOCKER_BUILD_ARGS DOCKER_PIDS_LIMIT DOCKER_CA_BUNDLE AIS_WHEELS_URL \
  ACLRUNTIME_URL ACLRUNTIME_SHA256 AIS_BENCH_URL AIS_BENCH_SHA256 ASCEND_DOCKER_RUNTIME \
  ASCEND_HOST_ROOT ASCEND_DEVICE_NODE
unexport $(USER_VARIABLES) $(filter-out $(DOCKER_VARIABLES),$(COMMAND_LINE))
# The names (never the values) of the command-line variables, and of the Make-level ones a run
# also takes: npuzoo.run refuses a name it does not know (BATCH=4 would be ignored silently).
# Only for the runs that check them: `make test PYTEST_ARGS=...` hands the tests' own `make`
# calls no list of the parent's names.
$(MODEL_NAMES) sweep: export NPUZOO_COMMAND_LINE := $(COMMAND_LINE)
$(MODEL_NAMES) sweep: export NPUZOO_MAKE_VARIABLES := $(DOCKER_VARIABLES) DOCKER IMAGE_MODELS PYTHON TORCH_INDEX

# PYTHON (the python that creates .venv) and PYTEST_ARGS reach their commands through the
# environment, as one word and as words: never through a shell's parsing.
export NPUZOO_VENV_PYTHON := $(if $(value PYTHON),$(value PYTHON),python3)
export NPUZOO_PYTEST_ARGS := $(value PYTEST_ARGS)
override VENV := .venv
override PY   := $(abspath $(VENV))/bin/python
export PY

.PHONY: all test lint venv clean clean-sets help readme compare images sweep $(MODEL_NAMES)

help:
	@echo "Targets:"
	@echo "  make test                     set up .venv (first time: a few minutes), make lint, run the fast tests"
	@echo "  make lint                     static checks: ruff (lint) and mypy --strict on npuzoo/ (pyproject.toml)"
	@echo "  make <model> DATA=<dir> ...   one model's whole pipeline, one report per batch size"
	@echo "  make sweep MODELS=\"a b\" ...   every model x batch size as Ray tasks (docs/sweep.md)"
	@echo "  make readme                   re-render the READMEs and plots from reports/"
	@echo "  make compare [STRICT=1]       latest like-for-like run-over-run changes (STRICT=1: fail on one)"
	@echo "  make images                   build the microtool images of RUNNER=docker (images/README.md)"
	@echo "  make venv                     only create .venv (TORCH_INDEX=<url>: torch from another index)"
	@echo "  make clean-sets               remove preprocessed sets no model references any more"
	@echo "  make clean                    remove build/ (reports/ and READMEs stay)"
	@echo "Variables of make <model> (and sweep):"
	@echo "  DATA=<dir>       val/ and val_label.txt (required)"
	@echo "  BS=\"1 4 16\"      batch sizes (default 1)"
	@echo "  N=300            first N labelled images (default: all)"
	@echo "  WEIGHTS=         unset: published file; a path; or random"
	@echo "  SOC=cpu          cpu (default), auto (npu-smi), or an Ascend chip such as Ascend310P3"
	@echo "  RUNNER=local     local (.venv) or docker"
	@echo "  DEVICE=0         NPU id (CPU: a comma list runs devices one after another)"
	@echo "  LOOP=, WARMUP=   perf loop and warm-up counts (CPU: 20, 2; Ascend: the model's guide)"
	@echo "  AIPP=1           uint8 input, normalisation inside the model"
	@echo "  PRECISION=int8   CPU: quantised model, calibrated on CALIB=100 images not evaluated (or CALIB_DATA=)"
	@echo "  BACKEND=openvino CPU: OpenVINO Runtime instead of ONNX Runtime"
	@echo "  STREAMS=n        CPU: batches in flight in the perf step (default: tuned, else one per core)"
	@echo "  TUNE=0           CPU: no tuning pass; model.yaml's engine (default: engine and streams tuned)"
	@echo "  PERF_SECONDS=3   CPU: the perf loop runs at least LOOP times and this many seconds"
	@echo "  FORCE=1          make this run the committed report, whatever machine or run is there"
	@echo "  STRICT=1         fail when a drop is flagged against the latest like-for-like run, or it cannot be judged"
	@echo "  MODELS=, SHARDS= sweep only: the models, and shards of the image set per device"
	@echo "Models: $(MODEL_NAMES)"

# A target that is no model nor any of the above: say which exist instead of make's own words.
.DEFAULT:
	@printf "error: no model or target named '%s'; models: %s; targets: %s\n" '$(subst ','\'',$@)' \
	  '$(MODEL_NAMES)' 'help test lint readme compare images sweep clean-sets clean' >&2; exit 2

venv: $(VENV)/.installed

# The virtual environment, from the pinned requirements (the model folders pin the same).
# One installer at a time (flock): a second `make` waits, then finds it done.
$(VENV)/.installed: requirements.txt $(wildcard models/*/requirements.txt)
	@mkdir -p $(VENV)
	flock $(VENV).lock $(MAKE) --no-print-directory -f mk/venv.mk

# Static checks, configured in pyproject.toml. A prerequisite of test, which has no way to
# skip them: CI (.ci/run) runs make test.
lint: venv
	$(PY) -m ruff check
	$(PY) -m mypy

# CI=true runs the slow (end-to-end, export) tests as well.
test: venv lint
	set -f; $(PY) -m pytest $(if $(filter true 1 yes,$(CI)),,-m "not slow") $$NPUZOO_PYTEST_ARGS

# One model, every batch size in BS: npuzoo.run checks the variables, takes the model's
# lock, identifies DATA and WEIGHTS by content, then runs mk/pipeline.mk once per batch size.
# `+`: under `make -n` too, where the driver only shows the pipeline's commands (make -n).
$(MODEL_NAMES): venv
	+@$(PY) -m npuzoo.run $@

# MODELS x BS as Ray tasks, one device each (docs/sweep.md): npuzoo.sweep checks the variables,
# runs each model's shared steps, then one task per (model, BS) or per shard (SHARDS=k), on the
# cluster at RAY_ADDRESS or a local Ray instance, and publishes every report here.
sweep: venv
	+@$(PY) -m npuzoo.sweep

# RUNNER=docker: the microtool images (images/, mk/docker.mk). Builds the shared images and
# those of IMAGE_MODELS (default: every model); each is tagged with a hash of what goes in, so
# a second run builds nothing. Needs an engine (DOCKER_HOST) and a client (DOCKER, default: the
# docker on PATH, mk/docker.mk). CI, with no registry: make images
# BASE_IMAGE=local/debian:bookworm (images/local-base.sh).
IMAGE_MODELS ?= $(MODEL_NAMES)
# (DOCKER only when given: `export` would define it, empty, and mk/docker.mk refuses that)
export IMAGE_MODELS $(if $(filter undefined,$(origin DOCKER)),,DOCKER)

images: venv
	@$(MAKE) --no-print-directory -f mk/docker.mk images

# READMEs and tables are rendered from reports/ and model.yaml alone (no model is run).
readme: venv
	$(PY) -m npuzoo.readme

# Run-over-run changes recorded in reports/.
compare: venv
	$(PY) -m npuzoo.report compare$(if $(filter 1,$(value STRICT)), --strict)

# Shared dataset selections and preprocessed sets (build/data, build/prep) that no model's
# runs reference any more (an edited model.yaml or preprocessing makes a new key).
clean-sets: venv
	$(PY) -m npuzoo.store clean

clean:
	rm -rf build

endif
