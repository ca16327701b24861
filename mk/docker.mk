# RUNNER=docker: every pipeline step in its microtool image (images/*.Dockerfile).
#
# Two uses:
#   included by mk/pipeline.mk      defines RUN_BASE, RUN_MODEL, RUN_INFER (the `docker run`
#                                   prefixes of the steps' command lines) and PYRUN
#   make -f mk/docker.mk images     builds the images (the top-level `make images` calls it)
#
# Images and tags (<hash>: images/content-hash.sh over everything that goes in, parents' tags
# included, so a changed input rebuilds that image and its children and nothing else):
#   npuzoo/python:<hash>            Python 3.11, numpy, Pillow, PyYAML, Jinja2, tqdm, git, patch
#   npuzoo/base:<hash>              python + npuzoo (the steps that only need the package)
#   npuzoo/infer:<hash>             python + onnx, onnxruntime, npuzoo (compile, npuzoo.bench)
#   npuzoo/export:<hash>            python + torch, torchvision, onnx (no npuzoo: its edits
#                                   never rebuild the torch layers)
#   npuzoo/<model>:model-<hash>     export + the model folder + its patched upstream source
#   npuzoo/<model>:upstream-<hash>  the patched upstream tree alone (input of the model image)
#   npuzoo/ascend:<hash>            CANN + aclruntime + ais_bench + npuzoo (SOC=Ascend...)
# A built image leaves build/images/<name>-<hash>.stamp: a second `make images` does nothing.
#
# Steps run as the calling user (--user uid:gid) with the repository's paths mounted at the
# same absolute paths, so command lines are the same as with RUNNER=local: build/ read-write,
# the dataset (DATA) and a WEIGHTS file read-only, no network except for the two steps that
# download (weights fetch, upstream source fetch). Model steps run in /zoo, where the image
# has models/<model>/ baked in and build/ is mounted (also at its own path, for any link).

.DEFAULT_GOAL_BEFORE_DOCKER_MK := $(.DEFAULT_GOAL)

DOCKER            ?= /usr/bin/docker
DEVICE            ?= 0
IMAGE_REPO        ?= npuzoo
# The Debian image the base is built FROM; CI: local/debian:bookworm (images/local-base.sh).
BASE_IMAGE        ?= debian:bookworm-slim
# The CANN image of the Ascend image, and the ais_bench wheels (ais_bench_contract.md §7).
ASCEND_BASE_IMAGE ?= quay.io/ascend/cann:8.3.rc2-310p-ubuntu22.04-py3.11
AIS_WHEELS_URL    ?= https://aisbench.obs.myhuaweicloud.com/packet/ais_bench_infer/0.0.2/ait
ACLRUNTIME_URL    ?= $(AIS_WHEELS_URL)/aclruntime-0.0.2-cp311-cp311-linux_$(shell uname -m).whl
ACLRUNTIME_SHA256 ?=
AIS_BENCH_URL     ?= $(AIS_WHEELS_URL)/ais_bench-0.0.2-py3-none-any.whl
AIS_BENCH_SHA256  ?=
# The host's CA bundle: a BuildKit secret in builds, a read-only mount for downloading steps.
DOCKER_CA_BUNDLE  ?= /etc/ssl/certs/ca-certificates.crt
# Network of the steps that download (weights, upstream source); all others get none.
DOCKER_NET_ONLINE ?= host
DOCKER_BUILD_ARGS ?=
DOCKER_RUN_ARGS   ?=
ifneq ($(DOCKER_HOST),)
  export DOCKER_HOST
endif
export DOCKER_BUILDKIT := 1

,          := ,
REPO_DIR   := $(CURDIR)
IMAGES_DIR := build/images
CA_SECRET  := $(if $(wildcard $(DOCKER_CA_BUNDLE)),--secret id=ca_bundle$(,)src=$(DOCKER_CA_BUNDLE))
content_hash = $(shell images/content-hash.sh $(1))

# -- tags -------------------------------------------------------------------------------------
PYTHON_HASH := $(call content_hash,images/base.Dockerfile images/requirements/base.txt --text BASE_IMAGE=$(BASE_IMAGE))
PYTHON_TAG  := $(IMAGE_REPO)/python:$(PYTHON_HASH)
BASE_HASH   := $(call content_hash,npuzoo pyproject.toml --text $(PYTHON_TAG))
BASE_TAG    := $(IMAGE_REPO)/base:$(BASE_HASH)
INFER_HASH  := $(call content_hash,images/infer.Dockerfile images/requirements/infer.txt npuzoo pyproject.toml --text $(PYTHON_TAG))
INFER_TAG   := $(IMAGE_REPO)/infer:$(INFER_HASH)
EXPORT_HASH := $(call content_hash,images/export.Dockerfile images/requirements/export.txt --text $(PYTHON_TAG))
EXPORT_TAG  := $(IMAGE_REPO)/export:$(EXPORT_HASH)
ASCEND_HASH := $(call content_hash,images/ascend.Dockerfile images/requirements/ascend.txt npuzoo pyproject.toml \
                 --text $(ASCEND_BASE_IMAGE) --text $(ACLRUNTIME_URL)=$(ACLRUNTIME_SHA256) --text $(AIS_BENCH_URL)=$(AIS_BENCH_SHA256))
ASCEND_TAG  := $(IMAGE_REPO)/ascend:$(ASCEND_HASH)

# One model's images (MODEL set: by mk/pipeline.mk, or by the `images` loop below).
ifneq ($(MODEL),)
  UPSTREAM_TREE := $(if $(HAS_UPSTREAM),build/$(MODEL)/src/upstream)
  UPSTREAM_HASH := $(if $(UPSTREAM_TREE),$(call content_hash,$(UPSTREAM_TREE)))
  UPSTREAM_TAG  := $(if $(UPSTREAM_TREE),$(IMAGE_REPO)/$(MODEL):upstream-$(UPSTREAM_HASH))
  MODEL_HASH    := $(call content_hash,images/model.Dockerfile models/$(MODEL) --text $(EXPORT_TAG) --text upstream=$(UPSTREAM_HASH))
  MODEL_TAG     := $(IMAGE_REPO)/$(MODEL):model-$(MODEL_HASH)
  MODEL_STAMP   := $(IMAGES_DIR)/$(MODEL)-model-$(MODEL_HASH).stamp
endif

PYTHON_STAMP := $(IMAGES_DIR)/python-$(PYTHON_HASH).stamp
BASE_STAMP   := $(IMAGES_DIR)/base-$(BASE_HASH).stamp
INFER_STAMP  := $(IMAGES_DIR)/infer-$(INFER_HASH).stamp
EXPORT_STAMP := $(IMAGES_DIR)/export-$(EXPORT_HASH).stamp
ASCEND_STAMP := $(IMAGES_DIR)/ascend-$(ASCEND_HASH).stamp

# -- running a step ----------------------------------------------------------------------------
DOCKER_UID := $(shell id -u):$(shell id -g)
# The steps that download; every other step runs with --network=none.
DOWNLOAD_TARGETS = $(B)/weights/$(WEIGHTS_FILE) $(SOURCE_JSON)
step_network = $(if $(filter $@,$(DOWNLOAD_TARGETS)),--network=$(DOCKER_NET_ONLINE) \
  $(if $(wildcard $(DOCKER_CA_BUNDLE)),-v $(DOCKER_CA_BUNDLE):/etc/ssl/certs/ca-certificates.crt:ro),--network=none)
# Inputs from outside build/: the dataset and a WEIGHTS file, read-only at their own paths.
step_inputs = $(if $(wildcard $(DATA_ABS)),-v $(DATA_ABS):$(DATA_ABS):ro) \
  $(if $(filter custom-%,$(WEIGHTS_ID)),$(if $(wildcard $(WEIGHTS_PATH)),-v $(WEIGHTS_PATH):$(WEIGHTS_PATH):ro))
docker_run = $(DOCKER) run --rm --user $(DOCKER_UID) -e HOME=/tmp --shm-size=1g $(step_network) \
  $(step_inputs) -v $(REPO_DIR)/build:$(REPO_DIR)/build $(DOCKER_RUN_ARGS)
# A step whose image was never built stops with the command that builds it.
need_image = $(if $(wildcard $(1)),,$(error $(2): image not built; run `make images IMAGE_MODELS=$(MODEL)` (or `make $(MODEL) RUNNER=docker`, which does)))

# npuzoo steps: the repository read-only at its own path (npuzoo finds models/<model>/ and the
# git commit there), build/ and reports/ read-write. The report step runs in the inference
# image (RUN_INFER's), so the backend and versions it records are those that ran the model.
RUN_BASE = $(if $(filter %/report.json,$@),$(RUN_INFER) ,$(call need_image,$(BASE_STAMP),$(BASE_TAG))$(docker_run) \
  -w $(REPO_DIR) -v $(REPO_DIR):$(REPO_DIR):ro -v $(REPO_DIR)/reports:$(REPO_DIR)/reports $(BASE_TAG))
# The model folder's scripts, as baked into the model image (/zoo/models/<model>).
RUN_MODEL = $(call need_image,$(MODEL_STAMP),$(MODEL_TAG))$(docker_run) -w /zoo \
  -v $(REPO_DIR)/build:/zoo/build $(MODEL_TAG)
ifneq ($(filter Ascend%,$(SOC)),)
# Ascend: the documented device nodes and driver mounts (ais_bench_contract.md §10), those
# that exist here; the chip's group (HwHiAiUser) so a non-root user may open the device.
ASCEND_DEVICES := /dev/davinci$(DEVICE) /dev/davinci_manager /dev/devmm_svm /dev/hisi_hdc
ASCEND_MOUNTS  := /usr/local/Ascend/driver/lib64 /usr/local/Ascend/driver/version.info \
                  /usr/local/bin/npu-smi /usr/local/dcmi /etc/ascend_install.info
ASCEND_GID     := $(shell getent group HwHiAiUser | cut -d: -f3)
ifeq ($(wildcard /dev/davinci$(DEVICE)),)
  $(warning SOC=$(SOC): no /dev/davinci$(DEVICE) on this host; the Ascend image gets no NPU (atc still works))
endif
ASCEND_RUN_ARGS = $(foreach d,$(wildcard $(ASCEND_DEVICES)),--device=$(d)) \
  $(foreach m,$(wildcard $(ASCEND_MOUNTS)),-v $(m):$(m):ro) $(if $(ASCEND_GID),--group-add $(ASCEND_GID))
RUN_INFER = $(call need_image,$(ASCEND_STAMP),$(ASCEND_TAG))$(docker_run) $(ASCEND_RUN_ARGS) \
  -w $(REPO_DIR) -v $(REPO_DIR):$(REPO_DIR):ro $(ASCEND_TAG)
else
RUN_INFER = $(call need_image,$(INFER_STAMP),$(INFER_TAG))$(docker_run) -w $(REPO_DIR) \
  -v $(REPO_DIR):$(REPO_DIR):ro $(INFER_TAG)
endif
# The virtual environment's python3 in every image (the CANN image's python3 in Ascend's).
PYRUN := python3

# The package versions the report records: the report step runs in the inference image, which
# has no torch, so the model image's versions (export) are gathered and merged with its own.
ifneq ($(MODEL),)
ENVIRONMENT_JSON := $(IMAGES_DIR)/environment-$(MODEL)-$(MODEL_HASH)-$(INFER_HASH).json
MODEL_VERSIONS_PY := import importlib.metadata as m, json, platform; \
  have = {d.metadata["Name"].lower() for d in m.distributions()}; \
  print(json.dumps(dict(python=platform.python_version(), **{n: m.version(n) for n in \
  ("torch", "torchvision", "onnx", "numpy", "pillow") if n in have})))

$(ENVIRONMENT_JSON):
	$(RUN_MODEL) python3 -c '$(MODEL_VERSIONS_PY)' > $@.model.tmp
	$(RUN_INFER) $(PYRUN) -m npuzoo.report versions --merge $@.model.tmp --out $@
	rm -f $@.model.tmp
endif

# -- building ---------------------------------------------------------------------------------
# IMAGE_MODELS: the models whose images to build; Ascend's image only for an Ascend SOC.
IMAGE_MODELS ?= $(patsubst models/%/model.yaml,%,$(wildcard models/*/model.yaml))
IMAGE_TOOLS  ?= python base infer export $(if $(filter Ascend%,$(SOC)),ascend)

# build_image NAME,TAG,STAMP,DOCKERFILE,CONTEXT,ARGS: build unless the engine has TAG already,
# log to build/images/NAME.log (its tail on failure), tag NAME:latest too, leave the stamp.
define build_image
	@mkdir -p $(IMAGES_DIR)
	@if $(DOCKER) image inspect $(2) > /dev/null 2>&1; then echo "images: $(2) already built"; else \
	  echo "images: building $(2)"; start=$$(date +%s); \
	  $(DOCKER) build --network=host --progress=plain $(CA_SECRET) $(6) $(DOCKER_BUILD_ARGS) \
	    -f $(4) -t $(2) $(5) > $(IMAGES_DIR)/$(1).log 2>&1 \
	    || { tail -n 40 $(IMAGES_DIR)/$(1).log >&2; echo "error: building $(2) failed; log: $(IMAGES_DIR)/$(1).log" >&2; exit 1; }; \
	  echo "images: built $(2) in $$(( $$(date +%s) - start )) s"; \
	fi
	@$(DOCKER) tag $(2) $(firstword $(subst :, ,$(2))):latest
	@rm -f $(IMAGES_DIR)/$(1)-*.stamp && touch $(3)
endef

# A context folder per shared image: requirements.txt, wheels/ (pip download on the host:
# pip inside a build sees no local wheel files) and, for base and ascend, npuzoo/ itself.
CONTEXTS := $(IMAGES_DIR)/context
define stage_context
	@rm -rf $(CONTEXTS)/$(1)/npuzoo $(CONTEXTS)/$(1)/requirements.txt && mkdir -p $(CONTEXTS)/$(1)/wheels
	@cp images/requirements/$(2).txt $(CONTEXTS)/$(1)/requirements.txt
	$(if $(3),@cp -r npuzoo pyproject.toml $(CONTEXTS)/$(1)/ && rm -rf $(CONTEXTS)/$(1)/npuzoo/__pycache__)
endef
# fill_wheels TOOL: the wheels of images/requirements/TOOL.txt and their dependencies.
define fill_wheels
	@echo "images: wheels for $(1) (pip download into $(CONTEXTS)/$(1)/wheels)"
	@$(PY) -m pip download --disable-pip-version-check --only-binary=:all: \
	  -d $(CONTEXTS)/$(1)/wheels -r images/requirements/$(1).txt > $(IMAGES_DIR)/$(1)-wheels.log 2>&1 \
	  || { grep -v 'is ignored' $(IMAGES_DIR)/$(1)-wheels.log | tail -n 20 >&2; echo "error: pip download for the $(1) image failed; log: $(IMAGES_DIR)/$(1)-wheels.log" >&2; exit 1; }
endef

# python: the first stage of base.Dockerfile (Python and the common wheels); base, the whole
# file, reuses its layers from the build cache and adds npuzoo.
$(PYTHON_STAMP):
	$(call stage_context,base,base,with npuzoo)
	$(call fill_wheels,base)
	$(call build_image,python,$(PYTHON_TAG),$@,images/base.Dockerfile,$(CONTEXTS)/base,--target python --build-arg BASE_IMAGE=$(BASE_IMAGE))

$(BASE_STAMP): $(PYTHON_STAMP)
	$(call stage_context,base,base,with npuzoo)
	$(call build_image,base,$(BASE_TAG),$@,images/base.Dockerfile,$(CONTEXTS)/base,--build-arg BASE_IMAGE=$(BASE_IMAGE))

$(INFER_STAMP): $(PYTHON_STAMP)
	$(call stage_context,infer,infer,with npuzoo)
	$(call fill_wheels,infer)
	$(call build_image,infer,$(INFER_TAG),$@,images/infer.Dockerfile,$(CONTEXTS)/infer,--build-arg BASE_IMAGE=$(PYTHON_TAG))

$(EXPORT_STAMP): $(PYTHON_STAMP)
	$(call stage_context,export,export,)
	$(call fill_wheels,export)
	$(call build_image,export,$(EXPORT_TAG),$@,images/export.Dockerfile,$(CONTEXTS)/export,--build-arg BASE_IMAGE=$(PYTHON_TAG))

# Ascend: the wheels come from their URLs inside the build (checked against the sha256 args).
$(ASCEND_STAMP):
	$(call stage_context,ascend,ascend,with npuzoo)
	$(call build_image,ascend,$(ASCEND_TAG),$@,images/ascend.Dockerfile,$(CONTEXTS)/ascend,\
	  --build-arg BASE_IMAGE=$(ASCEND_BASE_IMAGE) --build-arg ACLRUNTIME_URL=$(ACLRUNTIME_URL) \
	  --build-arg ACLRUNTIME_SHA256=$(ACLRUNTIME_SHA256) --build-arg AIS_BENCH_URL=$(AIS_BENCH_URL) \
	  --build-arg AIS_BENCH_SHA256=$(AIS_BENCH_SHA256))

ifneq ($(MODEL),)
# The model image: the model folder is the build context; the patched upstream tree enters
# as the image UPSTREAM_TAG (docker import of build/<model>/src/upstream).
$(MODEL_STAMP): $(EXPORT_STAMP)
	$(if $(UPSTREAM_TAG),@$(DOCKER) image inspect $(UPSTREAM_TAG) > /dev/null 2>&1 \
	  || tar -C $(UPSTREAM_TREE) -c . | $(DOCKER) import - $(UPSTREAM_TAG) > /dev/null)
	$(call build_image,$(MODEL)-model,$(MODEL_TAG),$@,images/model.Dockerfile,models/$(MODEL),\
	  --build-arg BASE_IMAGE=$(EXPORT_TAG) --build-arg UPSTREAM_IMAGE=$(or $(UPSTREAM_TAG),scratch) \
	  --build-arg PIP_INSTALL_ARGS=--no-index)

.PHONY: model-image
model-image: $(MODEL_STAMP)
endif

STAMPS_OF = $(foreach t,$(1),$($(shell echo $(t) | tr a-z A-Z)_STAMP))

# The shared images, then per model: its upstream source (the pipeline's own source step, in
# the base image) and its image. A stamp whose image the engine no longer has is dropped.
.PHONY: images
images:
	@test -x "$(DOCKER)" || { echo "error: DOCKER=$(DOCKER): no docker client there; the Debian docker.io package installs /usr/bin/docker" >&2; exit 2; }
	@$(DOCKER) version --format '{{.Server.Version}}' > /dev/null 2>&1 || { echo "error: no Docker engine answers at $${DOCKER_HOST:-the default socket}; start dockerd or set DOCKER_HOST" >&2; exit 2; }
	@$(foreach t,$(IMAGE_TOOLS),$(DOCKER) image inspect $($(shell echo $(t) | tr a-z A-Z)_TAG) > /dev/null 2>&1 || rm -f $($(shell echo $(t) | tr a-z A-Z)_STAMP);)
	@$(MAKE) --no-print-directory -s -f mk/docker.mk $(call STAMPS_OF,$(IMAGE_TOOLS))
	@for m in $(IMAGE_MODELS); do \
	  up=$$($(PY) -m npuzoo.config makevars $$m | sed -n 's/^HAS_UPSTREAM := *//p'); \
	  if [ -n "$$up" ]; then \
	    $(MAKE) --no-print-directory -f mk/pipeline.mk MODEL=$$m RUNNER=docker SOC=cpu build/$$m/src/source.json; \
	  fi; \
	  tag=$$($(MAKE) --no-print-directory -s -f mk/docker.mk MODEL=$$m HAS_UPSTREAM=$$up print-model-tag); \
	  $(DOCKER) image inspect $$tag > /dev/null 2>&1 || rm -f $(IMAGES_DIR)/$$m-model-$${tag##*model-}.stamp; \
	  $(MAKE) --no-print-directory -s -f mk/docker.mk MODEL=$$m HAS_UPSTREAM=$$up model-image; \
	done

.PHONY: print-model-tag print-stamps
print-model-tag:
	@echo $(MODEL_TAG)

# The stamps a pipeline run with RUNNER=docker needs (tests/test_images.py dry-runs with them).
print-stamps:
	@echo $(call STAMPS_OF,$(IMAGE_TOOLS)) $(MODEL_STAMP)

.DEFAULT_GOAL := $(.DEFAULT_GOAL_BEFORE_DOCKER_MK)
