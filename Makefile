# Orchestrator of the inference zoo: one pattern of targets serves every model.
#
#   make test                                   set up .venv and run the test suite
#   make mobilenetv1 DATA=<dir> BS="1 4 16" N=300 WEIGHTS=random SOC=cpu
#
# The variables (BS, SOC, DATA, N, WEIGHTS, ...) are listed by `make help`, from their one table,
# npuzoo/variables.py; npuzoo/run.py checks them all before anything runs.
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

# The user's values (npuzoo/variables.py, kind "value"; tests/test_make_inputs.py checks this
# list against it) reach npuzoo.run verbatim and are checked there, in one place: Make never
# expands them (mk/outside.mk) nor exports them under their own names. No recipe below splices
# one in.
override USER_VARIABLES := BS SOC DATA N WEIGHTS RUNNER DEVICE LOOP WARMUP AIPP PRECISION QUANTIZER CALIB \
  CALIB_DATA BACKEND STREAMS TUNE PERF_SECONDS FORCE STRICT MODELS SHARDS TORCH_INDEX
$(foreach v,$(USER_VARIABLES),$(if $(filter undefined,$(origin $(v))),,$(eval export NPUZOO_$(v) := $$(value $(v)))))
# The images' settings (kind "docker"; mk/docker.mk checks them) reach the image builds that
# npuzoo.run starts through the environment, verbatim; no other command-line value is exported.
override DOCKER_VARIABLES := BASE_IMAGE ASCEND_BASE_IMAGE IMAGE_REPO DOCKER_NET_ONLINE \
  DOCKER_RUN_ARGS DOCKER_BUILD_ARGS DOCKER_PIDS_LIMIT DOCKER_CA_BUNDLE AIS_WHEELS_URL \
  ACLRUNTIME_URL ACLRUNTIME_SHA256 AIS_BENCH_URL AIS_BENCH_SHA256 ASCEND_DOCKER_RUNTIME \
  ASCEND_HOST_ROOT ASCEND_DEVICE_NODE
unexport $(USER_VARIABLES) $(filter-out $(DOCKER_VARIABLES),$(COMMAND_LINE))
# The names (never the values) of the command-line variables: npuzoo.run refuses a name that
# npuzoo/variables.py does not give the target (BATCH=4 would be ignored silently).
# Only for the runs that check them: `make test PYTEST_ARGS=...` hands the tests' own `make`
# calls no list of the parent's names.
$(MODEL_NAMES) sweep: export NPUZOO_COMMAND_LINE := $(COMMAND_LINE)

# PYTHON (the python that creates .venv) and PYTEST_ARGS reach their commands through the
# environment, as one word and as words: never through a shell's parsing.
export NPUZOO_VENV_PYTHON := $(if $(value PYTHON),$(value PYTHON),python3)
# ... checked here to be one word, a command name or a path (mk/outside.mk's not_name).
override PYTHON_BAD := $(if $(filter 1,$(words $(value NPUZOO_VENV_PYTHON))),$(call \
  not_name,$(value NPUZOO_VENV_PYTHON),$(NAME_CHARS) . / + -),bad)
# make -n: Make still runs the recipes that call $(MAKE) or start with `+`.
override DRY_RUN := $(findstring n,$(firstword -$(MAKEFLAGS)))
export NPUZOO_PYTEST_ARGS := $(value PYTEST_ARGS)
override VENV := .venv
override PY   := $(abspath $(VENV))/bin/python
export PY

.PHONY: all test lint venv clean clean-sets help readme compare images sweep $(MODEL_NAMES)

# The targets and variables, from npuzoo/variables.py (the venv's python, else PYTHON, checked
# above: it needs only the standard library, so help works before .venv exists).
help:
	@$(if $(wildcard $(PY)),$(PY),$(if $(PYTHON_BAD),python3,$(value NPUZOO_VENV_PYTHON))) -m npuzoo.variables help
	@echo "Models: $(MODEL_NAMES)"

# A target that is no model nor any of the above: say which exist instead of make's own words.
.DEFAULT:
	@printf "error: no model or target named '%s'; models: %s; targets: %s\n" '$(subst ','\'',$@)' \
	  '$(MODEL_NAMES)' 'help test lint readme compare images sweep clean-sets clean' >&2; exit 2

venv: $(VENV)/.installed

# The virtual environment, from the pinned requirements (the model folders pin the same).
# One installer at a time (flock): a second `make` waits, then finds it done.
# (make -n: the commands that would make it, without taking the lock.)
$(VENV)/.installed: requirements.txt $(wildcard models/*/requirements.txt)
	@$(if $(PYTHON_BAD),printf 'error: PYTHON=%s: expected a python command or path (letters, digits and _./+-)\n' "$$NPUZOO_VENV_PYTHON" >&2; exit 2)
	@mkdir -p $(VENV)
	$(if $(DRY_RUN),,flock $(VENV).lock )$(MAKE) --no-print-directory -f mk/venv.mk

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
	+@$(call driver,run $@)

# MODELS x BS as Ray tasks, one device each (docs/sweep.md): npuzoo.sweep checks the variables,
# runs each model's shared steps, then one task per (model, BS) or per shard (SHARDS=k), on the
# cluster at RAY_ADDRESS or a local Ray instance, and publishes every report here.
sweep: venv
	+@$(call driver,sweep)

# driver MODULE [ARGS]: `$(PY) -m npuzoo.MODULE ARGS`. Under make -n before .venv exists (whose
# commands make -n has just shown), PYTHON stands in for .venv/bin/python where it can import the
# driver (its packages: requirements.txt); otherwise a line says how to see the pipeline.
driver = $(if $(and $(DRY_RUN),$(if $(wildcard $(PY)),,none)),$(stand_in),$(PY) -m npuzoo.$(1))
stand_in = $(if $(and $(if $(PYTHON_BAD),,ok),$(shell $(value NPUZOO_VENV_PYTHON) -c 'import \
  npuzoo.$(firstword $(1))' 2> /dev/null && echo yes)),$(info make -n: no .venv yet (its commands \
  are above): $(value NPUZOO_VENV_PYTHON) stands in for $(PY) below)PY=$(value \
  NPUZOO_VENV_PYTHON) $(value NPUZOO_VENV_PYTHON) -m npuzoo.$(1),$(info make -n: no .venv yet \
  (its commands are above); the pipeline is shown once it exists, or with PYTHON=<a python that \
  has the packages of requirements.txt>))

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
