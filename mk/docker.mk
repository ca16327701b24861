# RUNNER=docker: every pipeline step in its microtool image (images/*.Dockerfile).
#
# Three uses:
#   included by mk/pipeline.mk      defines RUN_BASE, RUN_MODEL, RUN_PREP, RUN_INFER, RUN_REPORT (the
#                                   `docker run` prefixes of the steps' command lines: each
#                                   recipe names its image by the prefix it uses) and PYRUN
#   make -f mk/docker.mk tags       prints the images' hashes (NAME=HASH lines), computed once:
#                                   npuzoo/run.py gives them to every make it runs after
#   make -f mk/docker.mk images     builds the images (the top-level `make images` calls it);
#                                   it never runs a pipeline step: a model image bakes in the
#                                   patched upstream tree, made by the pipeline's source step,
#                                   which npuzoo/run.py runs first (`make <model> RUNNER=docker`)
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
#   npuzoo/ascend:<hash>            CANN (its python3: aclruntime, ais_bench) + the project's
#                                   venv /opt/venv (npuzoo's needs, numpy 2) (SOC=Ascend...)
# A built image leaves build/images/<name>-<hash>.stamp: a second `make images` does nothing.
#
# Steps run as the calling user (--user uid:gid) with the repository's paths mounted at the
# same absolute paths, so command lines are the same as with RUNNER=local: build/ read-write,
# the DATA folder read-only (reached through the pipeline's link $(DATA_LINK)), no network
# except for the two steps that download (weights fetch, upstream source fetch). Model steps
# run in /zoo, where the image has models/<model>/ baked in and build/ is mounted (also at its
# own path, for any link). Every container is hardened (DOCKER_HARDENING below): no
# capabilities, no privilege gain, a read-only root with a tmpfs /tmp, a process limit.
#
# Every developer variable spliced into a command (images, URLs, hashes, paths, extra args)
# is checked against a pattern when this file is read (CHECKED_VARIABLES below); a user's
# path never is spliced: it reaches the shell only as the quoted output of npuzoo.dockerargs.

include mk/outside.mk
.DEFAULT_GOAL_BEFORE_DOCKER_MK := $(.DEFAULT_GOAL)

# The docker client: DOCKER, else the first `docker` on PATH (its text, never expanded), else
# /usr/bin/docker (the Debian client; .ci/docker_stage.sh sets DOCKER to it).
ifeq ($(origin DOCKER),undefined)
  DOCKER := $(or $(firstword $(wildcard $(addsuffix /docker,$(subst :, ,$(value PATH))))),/usr/bin/docker)
endif
DEVICE            ?= 0
IMAGE_REPO        ?= npuzoo
# The Debian image the base is built FROM; CI: local/debian:bookworm (images/local-base.sh).
BASE_IMAGE        ?= debian:bookworm-slim
# The CANN image of the Ascend image, chosen by SOC: Ascend/cann-container-image publishes one
# per chip family (310p, 910, 910b, a3), each for x86_64 and aarch64, the image's Python in the
# tag's last part; none for the 310B nor the 310, which therefore need ASCEND_BASE_IMAGE. Without
# an Ascend SOC (`make images IMAGE_TOOLS=ascend`) the 310p one.
CANN_IMAGE_REPO    ?= quay.io/ascend/cann
CANN_IMAGE_VERSION ?= 8.3.rc2
CANN_IMAGE_SUFFIX  ?= ubuntu22.04-py3.11
cann_family = $(if $(filter Ascend%,$(1)),$(if $(filter Ascend310P%,$(1)),310p,$(if \
  $(filter Ascend910B%,$(1)),910b,$(if $(filter Ascend910_93%,$(1)),a3,$(if \
  $(filter Ascend910 Ascend910A Ascend910ProA Ascend910ProB Ascend910PremiumA,$(1)),910)))),310p)
CANN_FAMILY = $(call cann_family,$(SOC))
ASCEND_BASE_IMAGE ?= $(if $(CANN_FAMILY),$(CANN_IMAGE_REPO):$(CANN_IMAGE_VERSION)-$(CANN_FAMILY)-$(CANN_IMAGE_SUFFIX))
# ais_bench 0.0.2 and its aclruntime (images/aclruntime-wheels.txt, read once here): the
# published wheel for the image's Python (the tag's `-py3.<minor>`) and this machine's
# architecture where there is one, each with its sha256; otherwise aclruntime is built in the
# image from the msit commit those wheels came from (ACLRUNTIME_SOURCE: COMMIT:FOLDER:SHA256).
# (Recursive `=`: nothing here expands SOC or the image's values before they are checked below.)
AIS_TABLE          := $(file <images/aclruntime-wheels.txt)
ASCEND_IMAGE_PYTHON ?= $(patsubst py3.%,cp3%,$(filter py3.%,$(lastword $(subst -, ,$(ASCEND_BASE_IMAGE)))))
ASCEND_IMAGE_ARCH  ?= $(shell uname -m)
ais_row             = $(subst :, ,$(filter $(1):%,$(AIS_TABLE)))
ACLRUNTIME_WHEEL    = $(call ais_row,$(ASCEND_IMAGE_PYTHON):$(ASCEND_IMAGE_ARCH))
AIS_WHEELS_URL     ?= https://aisbench.obs.myhuaweicloud.com/packet/ais_bench_infer/0.0.2/ait
ACLRUNTIME_URL     ?= $(if $(ACLRUNTIME_WHEEL),$(AIS_WHEELS_URL)/$(word 3,$(ACLRUNTIME_WHEEL)))
ACLRUNTIME_SHA256  ?= $(word 4,$(ACLRUNTIME_WHEEL))
ACLRUNTIME_SOURCE  ?= $(subst $() ,:,$(wordlist 2,4,$(call ais_row,source)))
MSIT_GIT_URL       ?= https://github.com/Ascend/msit.git
AIS_BENCH_URL      ?= $(AIS_WHEELS_URL)/$(word 3,$(call ais_row,py3:any))
AIS_BENCH_SHA256   ?= $(word 4,$(call ais_row,py3:any))
# The host's CA bundle: a BuildKit secret in builds, a read-only mount for downloading steps.
DOCKER_CA_BUNDLE  ?= /etc/ssl/certs/ca-certificates.crt
# Network of the steps that download (weights, upstream source); all others get none. The
# engine's NAT bridge: the host's own network namespace (its loopback services, its interfaces)
# stays out of reach. An engine started without a bridge (dockerd --bridge=none, as in this
# project's CI) needs DOCKER_NET_ONLINE=host for those two steps.
DOCKER_NET_ONLINE ?= bridge
# Processes and threads one step may have (--pids-limit): ONNX Runtime's and torch's thread
# pools and npuzoo.prep's workers take a few per core; a fork bomb stops here.
DOCKER_PIDS_LIMIT ?= 4096
DOCKER_BUILD_ARGS ?=
DOCKER_RUN_ARGS   ?=
# SOC=Ascend...: the Ascend Docker Runtime. Empty (or auto): used when `docker info` lists it;
# 1: used (--runtime=ascend unless the engine names it otherwise); 0: never (plain --device).
ASCEND_DOCKER_RUNTIME ?=
# The host's root for the NPU device nodes and driver files (empty: /); tests point it at a fake
# tree. What exists under it is passed in, at the same path in the container.
ASCEND_HOST_ROOT  ?=
# SOC=Ascend...: the N of the host's /dev/davinci<N> for DEVICE (a Chip Logic ID); empty: from
# the host's npu-smi (npuzoo.soc device-node; DEVICE itself where there is no npu-smi).
ASCEND_DEVICE_NODE ?=
# The host's python, for npuzoo.dockerargs (standard library only) and npuzoo.config.
PY                ?= $(CURDIR)/.venv/bin/python
ifneq ($(DOCKER_HOST),)
  export DOCKER_HOST
endif
export DOCKER_BUILDKIT := 1
SHELL      := /bin/bash
.SHELLFLAGS := -eo pipefail -c

,          := ,
define newline


endef
REPO_DIR   := $(CURDIR)
IMAGES_DIR ?= build/images
# IMAGE_MODELS: the models whose images `images` builds; Ascend's image only for an Ascend SOC.
IMAGE_MODELS ?= $(patsubst models/%/model.yaml,%,$(wildcard models/*/model.yaml))
IMAGE_TOOLS  ?= python base infer export $(if $(filter Ascend%,$(SOC)),ascend)

# -- developer variables, checked when this file is read ----------------------------------------
# Each variable below is spliced into command lines (image names, build args, docker flags,
# recipe paths), so its value must be one whole match of its pattern (grep -E, C locale): no
# shell metacharacters, quotes, spaces (but in the lists) or `$`. A value set on the command
# line or in the environment is first looked at as typed ($(value ...)): a `$` in it stops
# here, before Make would expand a `$(shell ...)` in it. One shell runs every pattern.
RE.image := [A-Za-z0-9][A-Za-z0-9._/:@-]*
RE.optimage := ([A-Za-z0-9][A-Za-z0-9._/:@-]*)?
RE.token := [A-Za-z0-9._-]*
RE.source := ([0-9a-f]{40}:[A-Za-z0-9._/-]+:[0-9a-f]{64})?
RE.node  := ([0-9]{1,4})?
RE.repo  := [a-z0-9][a-z0-9._/:-]*
RE.net   := [A-Za-z0-9][A-Za-z0-9._:-]*
RE.url   := https?://[A-Za-z0-9._~/%:@+=,-]+
RE.opturl := (https?://[A-Za-z0-9._~/%:@+=,-]+)?
RE.sha   := ([0-9a-f]{64})?
RE.path  := [A-Za-z0-9._/+@-]+
RE.optpath := ([A-Za-z0-9._/+@-]+)?
RE.abspath := /[A-Za-z0-9._/+@-]*
RE.args  := [A-Za-z0-9._/:=,@+ -]*
RE.count := [1-9][0-9]*
RE.names := [A-Za-z0-9._ -]*
RE.name  := ([a-z0-9][a-z0-9_-]*)?
RE.device := [0-9]{1,4}(,[0-9]{1,4})*
RE.switch := (0|1|auto)?
RE.optabspath := (/[A-Za-z0-9._/+@-]*)?
RE.hash  := ([0-9a-f]{12})?
WHAT.image := an image reference (letters, digits and ._/:@-)
WHAT.optimage := an image reference (letters, digits and ._/:@-), or empty
WHAT.token := letters, digits and ._-
WHAT.source := COMMIT:FOLDER:SHA256 (40 and 64 lowercase hex digits), or empty
WHAT.node  := a /dev/davinci<N> number, or empty
WHAT.repo  := an image repository (lowercase letters, digits and ._/:-)
WHAT.net   := a docker network name (letters, digits and ._:-)
WHAT.url   := an http(s) URL of letters, digits and ._~/%:@+=,- (no ?, &, ; or quotes)
WHAT.opturl := an http(s) URL of letters, digits and ._~/%:@+=,- (no ?, &, ; or quotes), or empty
WHAT.sha   := a sha256 (64 lowercase hex digits) or empty
WHAT.path  := a path of letters, digits and ._/+@-
WHAT.optpath := a path of letters, digits and ._/+@-, or empty
WHAT.abspath := an absolute path of letters, digits and ._/+@- (RUNNER=docker mounts it as is)
WHAT.args  := docker options of letters, digits, spaces and ._/:=,@+-
WHAT.count := a positive number
WHAT.names := names of letters, digits and ._- separated by spaces
WHAT.name  := a model name (lowercase letters, digits, _ and -)
WHAT.device := a device id (digits), or a comma list of them
WHAT.switch := 0, 1, auto or empty
WHAT.optabspath := an absolute path of letters, digits and ._/+@-, or empty
WHAT.hash  := an image hash (12 lowercase hex digits, as `make -f mk/docker.mk tags` prints) or empty
# The hashes of the image tags (below): computed here unless given.
HASH_VARIABLES := PYTHON_HASH BASE_HASH INFER_HASH EXPORT_HASH ASCEND_HASH UPSTREAM_HASH MODEL_HASH
CHECKED_VARIABLES := BASE_IMAGE:image CANN_IMAGE_REPO:repo CANN_IMAGE_VERSION:token \
  CANN_IMAGE_SUFFIX:token ASCEND_BASE_IMAGE:optimage IMAGE_REPO:repo ASCEND_IMAGE_PYTHON:token \
  ASCEND_IMAGE_ARCH:token ACLRUNTIME_SOURCE:source MSIT_GIT_URL:url ASCEND_DEVICE_NODE:node \
  DOCKER_NET_ONLINE:net AIS_WHEELS_URL:url ACLRUNTIME_URL:opturl AIS_BENCH_URL:url \
  ACLRUNTIME_SHA256:sha AIS_BENCH_SHA256:sha DOCKER_CA_BUNDLE:optpath DOCKER:path PY:path \
  IMAGES_DIR:path REPO_DIR:abspath DOCKER_PIDS_LIMIT:count DOCKER_RUN_ARGS:args \
  DOCKER_BUILD_ARGS:args IMAGE_MODELS:names IMAGE_TOOLS:names MODEL:name DEVICE:device \
  ASCEND_DOCKER_RUNTIME:switch ASCEND_HOST_ROOT:optabspath HASHED_MODEL:name \
  $(addsuffix :hash,$(HASH_VARIABLES))
check_name = $(firstword $(subst :, ,$(1)))
check_kind = $(lastword $(subst :, ,$(1)))
one_line   = $(subst $(newline),\n,$(1))
refuse     = $(error $(1)=$(call one_line,$(2)): not allowed here; expected $(WHAT.$(3)))
shell_quote = '$(subst ','\'',$(1))'
typed_dollar = $(and $(findstring $$,$(value $(1))),$(filter-out file default,$(origin $(1))))
$(foreach c,$(CHECKED_VARIABLES),$(if $(call typed_dollar,$(call check_name,$(c))),$(call \
  refuse,$(call check_name,$(c)),$(value $(call check_name,$(c))),$(call check_kind,$(c)))))
# A line break never reaches the pattern ($(shell) drops it from its command): refused here.
$(foreach c,$(CHECKED_VARIABLES),$(if $(findstring $(newline),$($(call check_name,$(c)))),$(call \
  refuse,$(call check_name,$(c)),$($(call check_name,$(c))),$(call check_kind,$(c)))))
REFUSED := $(shell $(foreach c,$(CHECKED_VARIABLES),printf '=%s' $(call shell_quote,$($(call check_name,$(c)))) \
  | LC_ALL=C grep -Ezqx -e '=($(RE.$(call check_kind,$(c))))' || echo $(c);))
$(foreach c,$(firstword $(REFUSED)),$(call refuse,$(call check_name,$(c)),$($(call check_name,$(c))),$(call check_kind,$(c))))
# SOC (empty: no Ascend image) has the one check of a SOC value, npuzoo.soc's; the value reaches
# it quoted, and its one line (`error: SOC=...`) is this file's error.
ifneq ($(SOC),)
  SOC_PROBLEM := $(shell $(PY) -m npuzoo.soc check $(call shell_quote,$(SOC)) 2>&1 >/dev/null)
  $(if $(SOC_PROBLEM),$(error $(strip $(patsubst error:%,%,$(SOC_PROBLEM)))))
endif

CA_SECRET  := $(if $(wildcard $(DOCKER_CA_BUNDLE)),--secret id=ca_bundle$(,)src=$(DOCKER_CA_BUNDLE))
content_hash = $(shell images/content-hash.sh $(1))
# What never goes into an image: Docker applies this list to the model image's context
# (models/<model>/, it is the Dockerfile's own .dockerignore), the shared images' contexts are
# staged through it, and content-hash.sh hashes what it lets through.
CONTEXT_IGNORE := images/model.Dockerfile.dockerignore

# -- tags -------------------------------------------------------------------------------------
# Each hash is computed at most once per top-level make, not at every reading of this file (each
# batch size's make, each Make restart): npuzoo/run.py runs `make -f mk/docker.mk tags` once per
# `make <model>` and gives the NAME=HASH lines it prints to every make it runs after (through
# the environment), and `images` gives its own to its sub-makes. A hash given is used as it is
# (checked above: 12 hex digits); one not given (or empty) is computed here. The model's two
# come with HASHED_MODEL, the model they were computed for: another model's are recomputed.
hash_of = $(or $($(1)),$(call content_hash,$(2)))
PYTHON_HASH := $(call hash_of,PYTHON_HASH,images/base.Dockerfile images/requirements/base.txt --text BASE_IMAGE=$(BASE_IMAGE))
PYTHON_TAG  := $(IMAGE_REPO)/python:$(PYTHON_HASH)
BASE_HASH   := $(call hash_of,BASE_HASH,--ignore $(CONTEXT_IGNORE) npuzoo pyproject.toml --text $(PYTHON_TAG))
BASE_TAG    := $(IMAGE_REPO)/base:$(BASE_HASH)
INFER_HASH  := $(call hash_of,INFER_HASH,images/infer.Dockerfile images/requirements/infer.txt --ignore $(CONTEXT_IGNORE) npuzoo pyproject.toml --text $(PYTHON_TAG))
INFER_TAG   := $(IMAGE_REPO)/infer:$(INFER_HASH)
EXPORT_HASH := $(call hash_of,EXPORT_HASH,images/export.Dockerfile images/requirements/export.txt --text $(PYTHON_TAG))
EXPORT_TAG  := $(IMAGE_REPO)/export:$(EXPORT_HASH)
# The Ascend image only where it can be used: an Ascend SOC, or asked for in IMAGE_TOOLS.
ifneq ($(filter Ascend%,$(SOC))$(filter ascend,$(IMAGE_TOOLS)),)
ASCEND_HASH := $(call hash_of,ASCEND_HASH,images/ascend.Dockerfile images/requirements/ascend.txt images/requirements/ascend-cann.txt --ignore $(CONTEXT_IGNORE) npuzoo pyproject.toml \
                 --text image=$(ASCEND_BASE_IMAGE) --text $(ACLRUNTIME_URL)=$(ACLRUNTIME_SHA256) --text $(AIS_BENCH_URL)=$(AIS_BENCH_SHA256) \
                 --text source=$(if $(ACLRUNTIME_URL),,$(MSIT_GIT_URL)=$(ACLRUNTIME_SOURCE)) images/requirements/aclruntime-build.txt)
endif
ASCEND_TAG  := $(IMAGE_REPO)/ascend:$(ASCEND_HASH)

# One model's images (MODEL set: by mk/pipeline.mk, or by `images` below). The upstream tree is
# the pipeline's source step's output: build/<model>/src/upstream (HAS_UPSTREAM: model.mk's).
ifneq ($(MODEL),)
  UPSTREAM_TREE := $(if $(HAS_UPSTREAM),build/$(MODEL)/src/upstream)
  ifneq ($(HASHED_MODEL),$(MODEL))
    override UPSTREAM_HASH := $(if $(UPSTREAM_TREE),$(call content_hash,$(UPSTREAM_TREE)))
    override MODEL_HASH    :=
  endif
  UPSTREAM_TAG  := $(if $(UPSTREAM_TREE),$(IMAGE_REPO)/$(MODEL):upstream-$(UPSTREAM_HASH))
  override MODEL_HASH := $(call hash_of,MODEL_HASH,images/model.Dockerfile --ignore $(CONTEXT_IGNORE) models/$(MODEL) --text $(EXPORT_TAG) --text upstream=$(UPSTREAM_HASH))
  MODEL_TAG     := $(IMAGE_REPO)/$(MODEL):model-$(MODEL_HASH)
  MODEL_STAMP   := $(IMAGES_DIR)/$(MODEL)-model-$(MODEL_HASH).stamp
endif
# The hashes as make arguments, for a sub-make that should compute none of them again.
GIVEN_HASHES = $(foreach v,$(if $(MODEL),$(HASH_VARIABLES),$(filter-out UPSTREAM_HASH MODEL_HASH,$(HASH_VARIABLES))),$(v)=$($(v))) \
  $(if $(MODEL),HASHED_MODEL=$(MODEL))

PYTHON_STAMP := $(IMAGES_DIR)/python-$(PYTHON_HASH).stamp
BASE_STAMP   := $(IMAGES_DIR)/base-$(BASE_HASH).stamp
INFER_STAMP  := $(IMAGES_DIR)/infer-$(INFER_HASH).stamp
EXPORT_STAMP := $(IMAGES_DIR)/export-$(EXPORT_HASH).stamp
ASCEND_STAMP := $(IMAGES_DIR)/ascend-$(ASCEND_HASH).stamp

# -- running a step ----------------------------------------------------------------------------
DOCKER_UID := $(shell id -u):$(shell id -g)
# The user of the containers that run upstream code (confined, below): the caller, unless the
# caller is root: then nobody (65534) with root's group, which reads what root made under build/
# (files 0640 included) but owns nothing there except the folder handed to it for the step.
CONFINED_UID := $(if $(filter 0:%,$(DOCKER_UID)),65534:0,$(DOCKER_UID))
# bind SOURCE,TARGET[,readonly]: a bind mount of a path of this file's own (the repository,
# the CA bundle, the Ascend driver), all checked above to hold no `,`, `"` or `:`.
bind = --mount type=bind,source=$(1),target=$(2)$(if $(3),$(,)readonly)
# Every container: no capabilities (steps run as the calling user, who needs none), no gain
# of privileges (setuid files do nothing), a read-only root (only build/ and /tmp, which is
# HOME, are writable), and at most DOCKER_PIDS_LIMIT processes and threads.
DOCKER_TMPFS     := /tmp:rw,nosuid,nodev,noexec
DOCKER_HARDENING  = --cap-drop=ALL --security-opt=no-new-privileges --read-only \
  --tmpfs $(DOCKER_TMPFS) --pids-limit=$(DOCKER_PIDS_LIMIT)
# The steps that download; every other step runs with --network=none.
DOWNLOAD_TARGETS = $(B)/weights/$(WEIGHTS_FILE) $(SOURCE_JSON)
step_network = $(if $(filter $@,$(DOWNLOAD_TARGETS)),--network=$(DOCKER_NET_ONLINE) \
  $(if $(wildcard $(DOCKER_CA_BUNDLE)),$(call bind,$(DOCKER_CA_BUNDLE),/etc/ssl/certs/ca-certificates.crt,ro)),--network=none)
# The DATA folder, read-only: mk/pipeline.mk's DATA_LINK (build/inputs/<dataset id>.data, a
# build/-relative path of safe characters, checked again here) links to it, and, with
# PRECISION=int8, build/inputs/$(CALIB_ID).data to the calibration images' folder (mounted
# too unless it names the same folder). npuzoo.dockerargs resolves a link itself and prints
# one quoted --mount value: the folder the link finally points to, at the link's own target
# path, the absolute path the dataset links under build/ point into. The user's path thus
# never is recipe text: it exists only in the link and in the output of the substitution,
# which the shell does not re-read. Only the offline steps of the base and model images get
# it (those that read images); a WEIGHTS file needs no mount (npuzoo/run.py copies it under
# build/<model>/weights/). The `$$(...)` survives one expansion: use RUN_BASE and RUN_MODEL
# in recipes or `=` variables, never `:=` ones (RUN_INFER holds none: mk/pipeline.mk's BENCH
# and CANN_RUN are `:=`).
RE.data_link := build/[A-Za-z0-9._/+-]+
CALIB_LINK    = $(if $(CALIB_ID),build/inputs/$(CALIB_ID).data)
link_ok       = $(if $(filter .. .,$(subst /, ,$(1)))$(findstring $(newline),$(1)),,$(shell printf '%s' \
  $(call shell_quote,$(1)) | LC_ALL=C grep -Ezqx -e '$(RE.data_link)' && echo ok))
check_link    = $(if $(1),$(if $(call link_ok,$(1)),,$(error $(2) $(call one_line,$(1)): expected a path \
  build/... of letters, digits and ._/+-)))
mount_link    = $(if $(wildcard $(1)),--mount "$$($(PY) -m npuzoo.dockerargs mount --resolve --readonly $(1))")
same_target   = $(if $(and $(1),$(2)),$(shell [ "$$(readlink $(1))" = "$$(readlink $(2))" ] && echo same))
step_data = $(if $(filter $@,$(DOWNLOAD_TARGETS)),,$(call check_link,$(DATA_LINK),DATA_LINK)$(call \
  check_link,$(CALIB_LINK),CALIB_ID's link)$(call mount_link,$(DATA_LINK)) $(if $(call \
  same_target,$(DATA_LINK),$(CALIB_LINK)),,$(call mount_link,$(CALIB_LINK))))
# docker_run_as CONFINED: as CONFINED_UID with build/ read-only when CONFINED is not empty.
docker_run_as = $(DOCKER) run --rm --user $(if $(1),$(CONFINED_UID),$(DOCKER_UID)) -e HOME=/tmp \
  --shm-size=1g $(DOCKER_HARDENING) $(step_network) $(call bind,$(REPO_DIR)/build,$(REPO_DIR)/build,$(1)) \
  $(DOCKER_RUN_ARGS)
docker_run = $(call docker_run_as,$(confined))
# The steps that run third-party upstream code (the model folder's scripts, which import the
# patched upstream tree; the upstream source step, which unpacks it) see build/ read-only and
# may write only their target's folder: npuzoo.dockerargs confine makes that folder (the step
# may have just removed it) and binds it read-write over the read-only build/, at its path in
# the repository and, for the model image, under /zoo. Every other step writes build/.
UPSTREAM_TARGETS = $(SOURCE_JSON)
confined = $(filter $@,$(UPSTREAM_TARGETS))
confine  = $(PY) -m npuzoo.dockerargs confine --at $(REPO_DIR) $(1) $(if $(filter-out \
  $(DOCKER_UID),$(CONFINED_UID)),--owner $(CONFINED_UID)) $(call shell_quote,$(or $(CONFINE_DIR),$(@D))) -- 
# A step whose image was never built stops with the command that builds it.
need_image = $(if $(wildcard $(1)),,$(error $(2): image not built; run `make $(MODEL) RUNNER=docker` (its source step, then `make images IMAGE_MODELS=$(MODEL)`)))

# Each recipe of mk/pipeline.mk names its image by the prefix it uses:
#   RUN_BASE    npuzoo/base    npuzoo's own steps (weights, dataset, source, shards, ...)
#   RUN_MODEL   <model> image  the model folder's scripts (pth2onnx, postprocess)
#   RUN_PREP    <model> image  npuzoo.prep with the folder's preprocess.py
#   RUN_INFER   npuzoo/infer   compile, npuzoo.bench (npuzoo/ascend with SOC=Ascend...)
#   RUN_REPORT  as RUN_INFER   the report step: in the image that ran the model, so the backend
#                              and versions it records are those of the run
# npuzoo steps: the repository read-only at its own path (npuzoo finds models/<model>/ and the
# git commit there), build/ read-write (reports/ is written by `publish`, on the host).
RUN_BASE_IMAGE = $(call need_image,$(BASE_STAMP),$(BASE_TAG))$(if $(confined),$(call confine,))$(docker_run) \
  $(step_data) -w $(REPO_DIR) $(call bind,$(REPO_DIR),$(REPO_DIR),ro) $(BASE_TAG)
RUN_REPORT = $(RUN_INFER)
RUN_BASE = $(RUN_BASE_IMAGE)
# The model folder's scripts, as baked into the model image (/zoo/models/<model>).
run_model = $(call need_image,$(MODEL_STAMP),$(MODEL_TAG))$(call confine,--at /zoo)$(call docker_run_as,ro) \
  $(step_data) -w /zoo $(call bind,$(REPO_DIR)/build,/zoo/build,ro) $(1)$(MODEL_TAG)
RUN_MODEL = $(call run_model,)
# The preprocess step: npuzoo.prep drives the folder's preprocess() in the model image, the
# repository's npuzoo/ mounted read-only where the image's PYTHONPATH (/zoo) finds it.
RUN_PREP = $(call run_model,$(call bind,$(REPO_DIR)/npuzoo,/zoo/npuzoo,ro) )
ifneq ($(filter Ascend%,$(SOC)),)
# == Ascend: the NPU in the container =========================================================
# DEVICE means what it means with RUNNER=local: the logical id ais_bench --device takes (npu-smi
# info -m's Chip Logic ID). The container gets that chip's node, /dev/davinci<N>, N its physical
# id (ASCEND_DEVICE_NODE, from npuzoo.soc device-node: they differ where NPUs are missing), or
# ASCEND_VISIBLE_DEVICES=<N> with the Ascend Docker Runtime. ACL numbers the NPUs a process sees
# from 0, so inside, ais_bench gets --device 0: from here on DEVICE is the container's id, 0, in
# every command mk/pipeline.mk writes (ais_bench --device, npuzoo.ascend run/describe --device),
# and ASCEND_HOST_DEVICE the host's logical id. That one reaches the container as
# NPUZOO_HOST_DEVICE: npu-smi inside still lists the chip under the host's numbering
# (npuzoo.ascend asks npu-smi for it and records it in the report).
ifneq ($(words $(subst $(,), ,$(DEVICE))),1)
  $(error DEVICE=$(DEVICE): SOC=$(SOC) runs take one device id)
endif
ifeq ($(ASCEND_BASE_IMAGE),)
  $(error SOC=$(SOC): no public CANN image for this chip ($(CANN_IMAGE_REPO) has 310p, 910, 910b and a3 images); build or pull a CANN image with this chip's toolkit and ops and pass ASCEND_BASE_IMAGE=<image> (a tag ending -py3.<minor> names its Python))
endif
ifeq ($(ASCEND_DEVICE_NODE),)
  ASCEND_DEVICE_NODE := $(shell $(PY) -m npuzoo.soc device-node --device $(DEVICE) --root '$(ASCEND_HOST_ROOT)' 2>&1)
  ifneq ($(shell printf '%s' '$(subst ','',$(ASCEND_DEVICE_NODE))' | LC_ALL=C grep -Ex '[0-9]{1,4}'),$(ASCEND_DEVICE_NODE))
    $(error $(call one_line,$(ASCEND_DEVICE_NODE)))
  endif
endif
ASCEND_HOST_DEVICE      := $(DEVICE)
ASCEND_CONTAINER_DEVICE := 0
override DEVICE         := $(ASCEND_CONTAINER_DEVICE)

# The device nodes and driver files (docs/ais_bench_compatibility.md, "Ascend in Docker"),
# those that exist on the host (under ASCEND_HOST_ROOT): a device node goes in as
# --device=HOST[:CONTAINER], a file read-only at its own path. 310B hosts (Atlas 200I/500 A2, SOC=Ascend310B*) have other nodes, as the
# Ascend device plugin passes them (set310BDefaultDevices): the svm, task-scheduler, log and
# media nodes below, and /dev/davinci_manager_docker, where present, serves as davinci_manager;
# their driver files and the npu-smi in /usr/local/sbin are mounted as the Atlas 200I DK A2
# container guides mount them.
ASCEND_DEVICES := /dev/davinci$(ASCEND_DEVICE_NODE) /dev/davinci_manager /dev/devmm_svm /dev/hisi_hdc
ASCEND_MOUNTS  := /usr/local/Ascend/driver/lib64 /usr/local/Ascend/driver/version.info \
                  /usr/local/bin/npu-smi /usr/local/sbin/npu-smi /usr/local/dcmi /etc/ascend_install.info
ASCEND_310B_DEVICES := /dev/svm0 /dev/ts_aisle /dev/upgrade /dev/sys /dev/vdec /dev/vpc /dev/pngd \
                       /dev/venc /dev/dvpp_cmdlist /dev/log_drv
ASCEND_310B_MOUNTS  := /etc/sys_version.conf /etc/hdcBasic.cfg /usr/lib64/aicpu_kernels /var/slogd \
  /var/dmp_daemon /var/davinci/driver $(addprefix /usr/lib64/,libaicpu_processer.so libaicpu_prof.so \
  libaicpu_sharder.so libadump.so libtsd_eventclient.so libaicpu_scheduler.so libdcmi.so \
  libmpi_dvpp_adapter.so libstackcore.so libc_sec.so libdevmmap.so libdrvdsmi.so libslog.so \
  libmmpa.so libascend_hal.so)
ifneq ($(filter Ascend310B%,$(SOC)),)
  ifneq ($(wildcard $(ASCEND_HOST_ROOT)/dev/davinci_manager_docker),)
    ASCEND_DEVICES := $(filter-out /dev/davinci_manager,$(ASCEND_DEVICES)) /dev/davinci_manager_docker:/dev/davinci_manager
  endif
  ASCEND_DEVICES += $(ASCEND_310B_DEVICES)
  ASCEND_MOUNTS  += $(ASCEND_310B_MOUNTS)
endif
# device_flag HOST[:CONTAINER]: --device=<ASCEND_HOST_ROOT>HOST[:CONTAINER], CONTAINER being HOST
# unless said (and always written out under a fake root).
node_host      = $(firstword $(subst :, ,$(1)))
node_container = $(or $(word 2,$(subst :, ,$(1))),$(1))
device_flag    = --device=$(ASCEND_HOST_ROOT)$(call node_host,$(1))$(if $(or $(ASCEND_HOST_ROOT),$(findstring :,$(1))),:$(call node_container,$(1)))
ASCEND_DEVICE_FLAGS := $(foreach d,$(ASCEND_DEVICES),$(if $(wildcard $(ASCEND_HOST_ROOT)$(call node_host,$(d))),$(call device_flag,$(d))))
ASCEND_MOUNT_FLAGS  := $(foreach m,$(ASCEND_MOUNTS),$(if $(wildcard $(ASCEND_HOST_ROOT)$(m)),$(call bind,$(ASCEND_HOST_ROOT)$(m),$(m),ro)))
ifeq ($(wildcard $(ASCEND_HOST_ROOT)/dev/davinci$(ASCEND_DEVICE_NODE)),)
  $(warning SOC=$(SOC): no $(ASCEND_HOST_ROOT)/dev/davinci$(ASCEND_DEVICE_NODE) on this host; the Ascend image gets no NPU (atc still works))
endif

# The Ascend Docker Runtime (ASCEND_DOCKER_RUNTIME above): it adds the device nodes and driver
# mounts itself, from ASCEND_VISIBLE_DEVICES (the davinci number), so none are passed here. The
# engine's name for it comes from npuzoo.dockerargs, one plain token or nothing.
ifneq ($(ASCEND_DOCKER_RUNTIME),0)
  ASCEND_RUNTIME_FOUND := $(shell $(PY) -m npuzoo.dockerargs ascend-runtime --docker $(DOCKER) 2>/dev/null)
endif
ifeq ($(ASCEND_DOCKER_RUNTIME),1)
  ASCEND_RUNTIME := $(or $(firstword $(ASCEND_RUNTIME_FOUND)),ascend)
else ifneq ($(ASCEND_DOCKER_RUNTIME),0)
  ASCEND_RUNTIME := $(firstword $(ASCEND_RUNTIME_FOUND))
endif
ifneq ($(ASCEND_RUNTIME),)
  ASCEND_NPU_ARGS := --runtime=$(ASCEND_RUNTIME) -e ASCEND_VISIBLE_DEVICES=$(ASCEND_DEVICE_NODE)
else
  ASCEND_NPU_ARGS := $(ASCEND_DEVICE_FLAGS) $(ASCEND_MOUNT_FLAGS)
endif

# The chip's group (HwHiAiUser) so a non-root user may open the device. CANN's tools write
# their logs and operator caches under HOME (/tmp), and the driver's tools may log under
# /var/log: /tmp keeps exec (the operator compiler may load what it builds there; unverified
# without a chip) and /var/log gets a tmpfs of its own. atc and ais_bench themselves run in
# build/<model>/<SOC>/cann-work (mk/pipeline.mk's `npuzoo.ascend run --cwd`), on the
# read-write build/ mount: kernel_meta/ and fusion_result.json land there, never in the
# read-only repository that is the container's working directory.
ASCEND_GID     := $(shell getent group HwHiAiUser | cut -d: -f3)
DOCKER_TMPFS   := /tmp:rw,nosuid,nodev,exec
ASCEND_RUN_ARGS = $(ASCEND_NPU_ARGS) -e NPUZOO_HOST_DEVICE=$(ASCEND_HOST_DEVICE) \
  $(if $(ASCEND_GID),--group-add $(ASCEND_GID)) --tmpfs /var/log:rw,nosuid,nodev,noexec
RUN_INFER = $(call need_image,$(ASCEND_STAMP),$(ASCEND_TAG))$(docker_run) $(ASCEND_RUN_ARGS) \
  -w $(REPO_DIR) $(call bind,$(REPO_DIR),$(REPO_DIR),ro) $(ASCEND_TAG)
# Two pythons in the Ascend image (images/ascend.Dockerfile): the project's steps run in its
# venv, /opt/venv (numpy 2; the same path holds the venv of every other image, so RUN_BASE and
# RUN_MODEL steps are unchanged), and ais_bench in CANN's python3, the one on PATH there, which
# keeps the numpy atc needs. ASCEND_PYTHON is mk/pipeline.mk's (AIS_BENCH = it -m ais_bench).
PYRUN         := /opt/venv/bin/python3
ASCEND_PYTHON := python3
else
RUN_INFER = $(call need_image,$(INFER_STAMP),$(INFER_TAG))$(docker_run) -w $(REPO_DIR) \
  $(call bind,$(REPO_DIR),$(REPO_DIR),ro) $(INFER_TAG)
# The virtual environment's python3 in every image.
PYRUN := python3
endif

# The package versions the report records: the report step runs in the inference image, which
# has no torch, so the model image's versions (export) are gathered and merged with its own.
ifneq ($(MODEL),)
ENVIRONMENT_JSON := $(IMAGES_DIR)/environment-$(MODEL)-$(MODEL_HASH)-$(INFER_HASH).json
MODEL_VERSIONS_PY := import importlib.metadata as m, json, platform; \
  have = {d.metadata["Name"].lower() for d in m.distributions()}; \
  print(json.dumps(dict(python=platform.python_version(), **{n: m.version(n) for n in \
  ("torch", "torchvision", "onnx", "numpy", "pillow") if n in have})))

# The model image's step writes nothing (its output is redirected here): an empty folder of its own.
$(ENVIRONMENT_JSON): CONFINE_DIR := build/$(MODEL)/image-versions
$(ENVIRONMENT_JSON):
	$(RUN_MODEL) python3 -c '$(MODEL_VERSIONS_PY)' > $@.model.tmp
	$(RUN_INFER) $(PYRUN) -m npuzoo.report versions --merge $@.model.tmp --out $@
	rm -f $@.model.tmp
endif

# -- building ---------------------------------------------------------------------------------

# build_image NAME,TAG,STAMP,DOCKERFILE,CONTEXT,ARGS: build unless the engine has TAG already,
# log to build/images/NAME.log (its tail on failure), tag NAME:latest too, leave the stamp.
# Builds use the host's network: they must work on an engine without a bridge (CI's), and the
# shared images install offline anyway; only the Ascend build downloads (its pinned wheels or
# source).
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
# pip inside a build sees no local wheel files) and, for base and ascend, npuzoo/ itself, copied
# through CONTEXT_IGNORE (content-hash.sh --list: the files its hash covers, nothing stray).
CONTEXTS := $(IMAGES_DIR)/context
define stage_context
	@rm -rf $(CONTEXTS)/$(1)/npuzoo $(CONTEXTS)/$(1)/pyproject.toml $(CONTEXTS)/$(1)/requirements.txt \
	  && mkdir -p $(CONTEXTS)/$(1)/wheels
	@cp images/requirements/$(2).txt $(CONTEXTS)/$(1)/requirements.txt
	$(if $(3),@cp pyproject.toml $(CONTEXTS)/$(1)/ && mkdir $(CONTEXTS)/$(1)/npuzoo \
	  && images/content-hash.sh --ignore $(CONTEXT_IGNORE) --list npuzoo \
	  | tar -C npuzoo --null -T - -cf - | tar -C $(CONTEXTS)/$(1)/npuzoo -xf -)
endef
# fill_wheels TOOL: the wheels of images/requirements/TOOL.txt and their dependencies; those
# in a local index are hard-linked first (link-wheels.py), so pip download copies none of them.
define fill_wheels
	@echo "images: wheels for $(1) (pip download into $(CONTEXTS)/$(1)/wheels)"
	@$(PY) images/link-wheels.py $(CONTEXTS)/$(1)/wheels images/requirements/$(1).txt
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
	@cp images/requirements/ascend-cann.txt $(CONTEXTS)/ascend/cann-requirements.txt
	@cp images/requirements/aclruntime-build.txt $(CONTEXTS)/ascend/aclruntime-build.txt
	$(call build_image,ascend,$(ASCEND_TAG),$@,images/ascend.Dockerfile,$(CONTEXTS)/ascend,\
	  --build-arg BASE_IMAGE=$(ASCEND_BASE_IMAGE) --build-arg ACLRUNTIME_URL=$(ACLRUNTIME_URL) \
	  --build-arg ACLRUNTIME_SHA256=$(ACLRUNTIME_SHA256) --build-arg AIS_BENCH_URL=$(AIS_BENCH_URL) \
	  --build-arg AIS_BENCH_SHA256=$(AIS_BENCH_SHA256) --build-arg MSIT_GIT_URL=$(MSIT_GIT_URL) \
	  --build-arg ACLRUNTIME_SOURCE=$(ACLRUNTIME_SOURCE))

ifneq ($(MODEL),)
# The model image: the model folder is the build context; the patched upstream tree enters
# as the image UPSTREAM_TAG (docker import of build/<model>/src/upstream).
$(MODEL_STAMP): $(EXPORT_STAMP)
	$(if $(UPSTREAM_TAG),@$(DOCKER) image inspect $(UPSTREAM_TAG) > /dev/null 2>&1 \
	  || tar -C $(UPSTREAM_TREE) -c . | $(DOCKER) import - $(UPSTREAM_TAG) > /dev/null)
	$(call build_image,$(MODEL)-model,$(MODEL_TAG),$@,images/model.Dockerfile,models/$(MODEL),\
	  --build-arg BASE_IMAGE=$(EXPORT_TAG) --build-arg UPSTREAM_IMAGE=$(or $(UPSTREAM_TAG),scratch) \
	  --build-arg PIP_INSTALL_ARGS=--no-index)

# model-image: MODEL's image, its stamp dropped first if the engine no longer has the tag. A
# model with an upstream source needs its patched tree, the pipeline's source step's output.
.PHONY: model-image
NO_TREE = error: the $(MODEL) image bakes in the patched upstream tree $(UPSTREAM_TREE), made by \
  the pipeline's source step: run 'make $(MODEL) RUNNER=docker' (the source step, then the images)
model-image:
	@$(if $(UPSTREAM_TREE),test -d $(UPSTREAM_TREE) || { echo "$(NO_TREE)" >&2; exit 2; })
	@$(DOCKER) image inspect $(MODEL_TAG) > /dev/null 2>&1 || rm -f $(MODEL_STAMP)
	@$(MAKE) --no-print-directory -s -f mk/docker.mk $(GIVEN_HASHES) MODEL=$(MODEL) HAS_UPSTREAM=$(HAS_UPSTREAM) \
	  $(MODEL_STAMP)
endif

STAMPS_OF = $(foreach t,$(1),$($(shell echo $(t) | tr a-z A-Z)_STAMP))

# The shared images, then each model's image. Images only: no pipeline step runs here. A model
# with an upstream source whose patched tree (build/<model>/src/upstream) is not there yet is
# skipped with a note: `make <model> RUNNER=docker` (npuzoo/run.py) runs its source step first
# and then builds its image. A stamp whose image the engine no longer has is dropped. The
# sub-makes get the hashes computed here (GIVEN_HASHES): each model's make computes two more.
.PHONY: images
images:
	@test -x "$(DOCKER)" || { echo "error: DOCKER=$(DOCKER): no docker client there; the Debian docker.io package installs /usr/bin/docker" >&2; exit 2; }
	@$(DOCKER) version --format '{{.Server.Version}}' > /dev/null 2>&1 || { echo "error: no Docker engine answers at $${DOCKER_HOST:-the default socket}; start dockerd or set DOCKER_HOST" >&2; exit 2; }
	@$(foreach t,$(IMAGE_TOOLS),$(DOCKER) image inspect $($(shell echo $(t) | tr a-z A-Z)_TAG) > /dev/null 2>&1 || rm -f $($(shell echo $(t) | tr a-z A-Z)_STAMP);)
	@$(MAKE) --no-print-directory -s -f mk/docker.mk $(GIVEN_HASHES) $(call STAMPS_OF,$(IMAGE_TOOLS))
	@for m in $(IMAGE_MODELS); do \
	  up=$$($(PY) -m npuzoo.config makevars $$m | sed -n 's/^HAS_UPSTREAM := *//p'); \
	  if [ -n "$$up" ] && [ ! -d build/$$m/src/upstream ]; then \
	    echo "images: $$m skipped: its image bakes in the patched upstream tree build/$$m/src/upstream," \
	      "not made yet; 'make $$m RUNNER=docker' makes it (the source step) and builds the image" >&2; \
	    continue; \
	  fi; \
	  $(MAKE) --no-print-directory -s -f mk/docker.mk $(filter-out UPSTREAM_HASH=% MODEL_HASH=%,$(GIVEN_HASHES)) \
	    MODEL=$$m HAS_UPSTREAM=$$up model-image; \
	done

# NAME=HASH lines of the images' hashes (and HASHED_MODEL=MODEL with MODEL set), for
# npuzoo/run.py to compute them once per `make <model>` and give them to every make after.
.PHONY: tags
tags:
	$(foreach v,$(HASH_VARIABLES),$(info $(v)=$($(v))))$(if $(MODEL),$(info HASHED_MODEL=$(MODEL)))
	@:

.PHONY: print-model-tag print-stamps print-run print-ascend
print-model-tag:
	@echo $(MODEL_TAG)

# The stamps a pipeline run with RUNNER=docker needs (tests/test_images.py dry-runs with them).
print-stamps:
	@echo $(call STAMPS_OF,$(IMAGE_TOOLS)) $(MODEL_STAMP)

# The prefixes, expanded once as in a recipe but not run (tests/test_images.py).
print-run:
	$(info RUN_BASE: $(RUN_BASE))
	$(info RUN_MODEL: $(RUN_MODEL))
	$(info RUN_INFER: $(RUN_INFER))
	$(info RUN_REPORT: $(RUN_REPORT))
	@:

# How the NPU reaches the Ascend container (SOC=Ascend... DEVICE=...), for people and tests.
print-ascend:
	$(if $(filter Ascend%,$(SOC)),,$(error print-ascend: set SOC=Ascend...))
	$(info host device: $(ASCEND_HOST_DEVICE))
	$(info device node: /dev/davinci$(ASCEND_DEVICE_NODE))
	$(info container device: $(DEVICE))
	$(info base image: $(ASCEND_BASE_IMAGE))
	$(info aclruntime: $(if $(ACLRUNTIME_URL),$(ACLRUNTIME_URL) sha256=$(ACLRUNTIME_SHA256),built from $(MSIT_GIT_URL) at $(ACLRUNTIME_SOURCE)))
	$(info ais_bench: $(AIS_BENCH_URL) sha256=$(AIS_BENCH_SHA256))
	$(info runtime: $(or $(ASCEND_RUNTIME),none))
	$(info npu args: $(ASCEND_NPU_ARGS))
	$(info device candidates: $(ASCEND_DEVICES))
	$(info mount candidates: $(ASCEND_MOUNTS))
	@:

.DEFAULT_GOAL := $(.DEFAULT_GOAL_BEFORE_DOCKER_MK)
