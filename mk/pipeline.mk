# The pipeline of one model for one chip and one batch size, as file targets.
# Called by npuzoo/run.py (`make <model>`), with validated values only:
#   make -f mk/pipeline.mk MODEL=m BS=b SOC=s RUNNER=r DEVICE=d LOOP=l WARMUP=w N=n AIPP=
#        DATASET_ID=<id> WEIGHTS_ID=<id> WEIGHTS_PATH=<build/... or random> publish
# No user-typed path appears here: DATA is the link $(DATA_LINK), a WEIGHTS file a copy in
# build/<model>/weights/store/. Ids name content (npuzoo/run.py): new bytes, new folders.
#
# build/<model>/
#   model.mk                          Make variables generated from model.yaml
#   .lock                             held by the run in progress (npuzoo/run.py)
#   weights/<file>, <file>.accepted.json    published download, the content accepted for it
#   weights/store/<sha256>.pth        a user's WEIGHTS file, copied
#   weights/<weights id>.json         what the run used (id: random, or
#                                     <published|custom|unverified>-<sha256[:12]>)
#   refs/                             links to the shared sets below that this model uses
# build/inputs/<dataset id>.data      link to the DATA folder (id: name-<content hash>-n<N>)
# build/data/<dataset id>/            selected images (links), labels, dataset.json (shared)
# build/prep/<prep key>/*.bin         preprocessed once per key, shared by models (npuzoo/store.py)
#   src/upstream, src/source.json     patched upstream tree and its record (tree hash)
#   onnx/<weights id>/<model>.onnx    export, once per model and weights (+ .sha256: its seal)
#   <SOC>/<weights id>/<model>_bs<BS>.onnx|.om                 compiled, once per chip and BS
#   <SOC>/<weights id>/<model>_bs<BS>.om.json                  Ascend: the chip the .om is for
#   <SOC>/<weights id>/bs<BS>/backend.json                      Ascend: CANN/driver/ais_bench versions
#   <SOC>/<weights id>/bs<BS>/perf-loop<L>-warmup<W>/           pure-inference perf
#   <SOC>/<weights id>/bs<BS>/<dataset id>/results/, accuracy.json, report.json
# and reports/<model>/<SOC>_bs<BS>.json, published from report.json.
#
# AIPP=1 (opt-in): preprocess.py --uint8 writes raw uint8 HWC
# files (a prep key of its own, `-u8-`, a quarter of the float32 size), build/<model>/aipp.cfg
# (from model.yaml) moves the normalisation into the model (atc --insert_op_conf, or
# npuzoo.compile --aipp on the CPU), and every later artefact gets its own name:
# <model>_bs<BS>_aipp.onnx|.om, bs<BS>_aipp/, reports/<model>/aipp/<SOC>_bs<BS>.json.

include mk/outside.mk
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

MODEL_DIR := models/$(MODEL)
B := build/$(MODEL)

# Made before it is read (and remade by its rule when stale): a first reading without it would
# take its variables from the environment.
ifeq ($(wildcard $(B)/model.mk),)
  $(shell mkdir -p $(B) && $(PY) -m npuzoo.config makevars $(MODEL) > $(B)/model.mk.tmp \
    && mv $(B)/model.mk.tmp $(B)/model.mk)
endif
include $(B)/model.mk

# npuzoo/run.py always passes LOOP and WARMUP: the user's, else model.yaml's perf defaults
# (the guide's --loop and --warmup_count), which model.mk also carries for a bare `make -f`.
# (`:=`, not `?=`: a command-line value replaces it, one from the environment does not.)
LOOP   := $(PERF_LOOP)
WARMUP := $(PERF_WARMUP)

# Every step's command is timed (npuzoo/steps.py): build/<model>/steps.jsonl, the table at the
# end of `make <model>` and the report's `timings`. $(call STEP,name[,bs]): bs = per batch size.
STEP = $(PY) -m npuzoo.steps run $(B)/steps.jsonl $(1)$(if $(2), --bs $(BS)) --

# Where each step runs. RUNNER=local: the .venv. RUNNER=docker: mk/docker.mk sets these
# prefixes to `docker run ... <image>` (base: tooling; model: the model folder's scripts and
# upstream source; infer: ONNX Runtime and the runner) and PYRUN to the image's python3.
ifeq ($(RUNNER),docker)
  include mk/docker.mk
else
  RUN_BASE  :=
  RUN_REPORT :=
  RUN_MODEL :=
  RUN_PREP  :=
  RUN_INFER :=
  PYRUN     := $(PY)
  ENVIRONMENT_JSON :=
endif
# The folder's preprocess() run by npuzoo.prep (worker pool, progress, clean stops); with
# RUNNER=docker in the model image, npuzoo/ mounted read-only (RUN_PREP, mk/docker.mk).
PREPROCESS = $(PYRUN) -m npuzoo.prep $(MODEL_DIR)

$(B)/model.mk: $(MODEL_DIR)/model.yaml npuzoo/config.py npuzoo/commands.py
	@mkdir -p $(@D)
	$(PY) -m npuzoo.config makevars $(MODEL) > $@.tmp && mv $@.tmp $@

# -- weights (identified by npuzoo/run.py, which writes $(WEIGHTS_JSON)) --------------------
WEIGHTS_JSON := $(B)/weights/$(WEIGHTS_ID).json

# The published file, downloaded once (run.py verifies its content on every run).
.PHONY: fetch-weights
fetch-weights: $(B)/weights/$(WEIGHTS_FILE)
$(B)/weights/$(WEIGHTS_FILE):
	$(call STEP,weights) $(RUN_BASE) $(PYRUN) -m npuzoo.weights fetch $(MODEL) $@

# Written by npuzoo/run.py before this makefile runs; missing only under a bare `make -f`.
MISSING_INPUT = @echo "error: $@: missing; run \`make $(MODEL)\` (npuzoo/run.py writes it)" >&2; exit 2
ifneq ($(findstring n,$(firstword -$(MAKEFLAGS))),)
  # make -n (npuzoo.run shows the commands without writing them first): said as what it is.
  MISSING_INPUT = @: $@ is written by npuzoo/run.py when the run starts
endif
$(WEIGHTS_JSON):
	$(MISSING_INPUT)
build/inputs/%.data:
	$(MISSING_INPUT)

# -- dataset and preprocessing: shared sets, keyed by content (npuzoo/store.py) --------------
# The selection of DATA's images is made once per dataset id, the preprocessed set once per
# PREP_KEY (npuzoo/run.py: dataset id + what changes the bytes), whichever model asks first;
# `store once` holds the set's lock, so a concurrent run waits and then reuses it.
ONCE        := $(PY) -m npuzoo.store once
# Exports, quantised graphs and compiled models: sealed with their sha256 when written, checked
# before a step reads them (npuzoo/store.py; the driver remakes a mismatching one before a run).
SEAL        := $(PY) -m npuzoo.store seal
CHECK       := $(PY) -m npuzoo.store check
DATASET_DIR := build/data/$(DATASET_ID)
DATA_LINK   := build/inputs/$(DATASET_ID).data
PREP_DIR    := build/prep/$(PREP_KEY)
ifeq ($(AIPP),1)
  AIPP_CFG    := $(B)/aipp.cfg
  AIPP_SUFFIX := _aipp
else
  AIPP_CFG    :=
  AIPP_SUFFIX :=
endif

# The DATA folder's path reaches the command only through the link (quoted substitution).
$(DATASET_DIR)/dataset.json: | $(DATA_LINK)
	$(call STEP,data) $(ONCE) --lock $(DATASET_DIR).lock --stamp $@ -- \
	  $(RUN_BASE) $(PYRUN) -m npuzoo.dataset prepare "$$(readlink -f $(DATA_LINK))" $(DATASET_DIR) $(if $(N),--limit $(N))

$(PREP_DIR)/.done: $(DATASET_DIR)/dataset.json
	$(call STEP,preprocess) $(ONCE) --lock $(PREP_DIR).lock --stamp $@ --clean $(PREP_DIR) \
	  --prep-check $(DATASET_DIR)/dataset.json $(PREP_BYTES) -- \
	  $(RUN_PREP) $(PREPROCESS) $(DATASET_DIR)/val $(PREP_DIR)$(if $(AIPP_CFG), --uint8)

# -- upstream source (models whose model.yaml lists upstream.sources) ---------------------------
# npuzoo.source tries each source in order (git clone at the pinned commit, else the PyPI
# release with its pinned sha256), applies that source's patch with `patch -p1`, and records
# what it used and the patched tree's hash; the export re-verifies the tree against it.
ifneq ($(HAS_UPSTREAM),)
  SOURCE_DIR  := $(B)/src/upstream
  SOURCE_JSON := $(B)/src/source.json
  SOURCE_ARGS := --source $(SOURCE_DIR)
  SOURCE_VERIFY = $(RUN_BASE) $(PYRUN) -m npuzoo.source verify $(MODEL) $(SOURCE_DIR) --record $(SOURCE_JSON)

# A record without its tree (someone deleted build/<m>/src/upstream) is stale too.
$(SOURCE_JSON): $(MODEL_DIR)/model.yaml $(wildcard $(MODEL_DIR)/*.diff $(MODEL_DIR)/*.patch) \
                npuzoo/source.py $(if $(wildcard $(SOURCE_DIR)),,source-missing)
	$(call STEP,source) $(RUN_BASE) $(PYRUN) -m npuzoo.source fetch $(MODEL) $(SOURCE_DIR) --record $@
else
  SOURCE_DIR    :=
  SOURCE_JSON   :=
  SOURCE_ARGS   :=
  SOURCE_VERIFY :=
endif

# -- export -------------------------------------------------------------------------------
ONNX := $(B)/onnx/$(WEIGHTS_ID)/$(MODEL).onnx

# What the export reads: the weights, the upstream tree's record (patch included) and
# EXPORT_KEY (npuzoo/store.py: pth2onnx.py and the folder's other modules, model.yaml's fields
# the export reads). A key is a file named by it: a new key, a new file, a new export; an edit
# the export does not read (another step's script, model.yaml's references) changes nothing.
ifneq ($(EXPORT_KEY),)
  EXPORT_INPUTS := $(B)/onnx/export-$(EXPORT_KEY).key
$(EXPORT_INPUTS):
	@mkdir -p $(@D) && touch $@
else
  # a bare `make -f` without npuzoo/run.py: the files themselves
  EXPORT_INPUTS := $(MODEL_DIR)/model.yaml $(filter-out $(MODEL_DIR)/preprocess.py \
                   $(MODEL_DIR)/postprocess.py,$(wildcard $(MODEL_DIR)/*.py))
endif
$(ONNX): $(WEIGHTS_JSON) $(SOURCE_JSON) $(EXPORT_INPUTS)
	@mkdir -p $(@D)
	$(SOURCE_VERIFY)
	$(call STEP,export) $(RUN_MODEL) $(PYRUN) $(MODEL_DIR)/pth2onnx.py $(WEIGHTS_PATH) $@ $(SOURCE_ARGS)
	$(SEAL) $@

# The AIPP config of atc --insert_op_conf (AIPP=1): uint8 RGB in, model.yaml's mean/std applied.
ifneq ($(AIPP_CFG),)
$(AIPP_CFG): $(MODEL_DIR)/model.yaml npuzoo/aipp.py
	$(RUN_BASE) $(PYRUN) -m npuzoo.aipp config $(MODEL) $@
endif

# -- PRECISION=int8 (CPU): the export quantised statically (npuzoo/quantize.py) ------------------
# Calibrated on CALIB images that are not evaluated: DATA's labelled images after the first N
# (CALIB_ID, offset CALIB_OFFSET), or the first CALIB of CALIB_DATA; npuzoo/run.py identifies
# them by content like the evaluation set, and they are selected and preprocessed the same way.
ifeq ($(PRECISION),int8)
  PREC_SUFFIX       := _int8
  CALIB_DATASET_DIR := build/data/$(CALIB_ID)
  CALIB_PREP_DIR    := build/prep/$(CALIB_PREP_KEY)
  COMPILE_SOURCE    := $(B)/onnx/$(WEIGHTS_ID)/$(MODEL)_int8-$(CALIB_PREP_KEY).onnx

$(CALIB_DATASET_DIR)/dataset.json: | build/inputs/$(CALIB_ID).data
	$(call STEP,data) $(ONCE) --lock $(CALIB_DATASET_DIR).lock --stamp $@ -- \
	  $(RUN_BASE) $(PYRUN) -m npuzoo.dataset prepare "$$(readlink -f build/inputs/$(CALIB_ID).data)" \
	  $(CALIB_DATASET_DIR) --limit $(CALIB) --offset $(CALIB_OFFSET)

$(CALIB_PREP_DIR)/.done: $(CALIB_DATASET_DIR)/dataset.json
	$(call STEP,preprocess) $(ONCE) --lock $(CALIB_PREP_DIR).lock --stamp $@ --clean $(CALIB_PREP_DIR) \
	  --prep-check $(CALIB_DATASET_DIR)/dataset.json $(PREP_BYTES) -- \
	  $(RUN_PREP) $(PREPROCESS) $(CALIB_DATASET_DIR)/val $(CALIB_PREP_DIR)

$(COMPILE_SOURCE): $(ONNX) $(CALIB_PREP_DIR)/.done npuzoo/quantize.py
	$(CHECK) $(ONNX)
	$(call STEP,quantize) $(RUN_INFER) $(PYRUN) -m npuzoo.quantize model $(ONNX) $(CALIB_PREP_DIR) $@
	$(SEAL) $@
else
  PREC_SUFFIX    :=
  COMPILE_SOURCE := $(ONNX)
endif

# -- compile, infer, perf: the chip-specific commands -----------------------------------------
# BACKEND=openvino (CPU): OpenVINO Runtime runs a portable compile (the batch fixed, no ONNX
# Runtime fusions); STREAMS=n: n batches in flight (the perf figure is images / wall time).
# The engine: BACKEND, else the run's own: for int8 INT8_BACKEND (npuzoo.config, measured
# faster), else the model's (model.yaml runtime.backend, else the runner's default,
# npuzoo.config.DEFAULT_BACKEND; model.mk sets both). A run on another engine than its own is
# a variant with its own folders and reports. TUNE=1 (npuzoo/run.py: unless TUNE=0, BACKEND=
# or STREAMS= is given): the runner picks the engine and streams itself (npuzoo/tune.py, cached
# in build/tuning/ per machine and compiled graph) in both the inference and the perf step; the
# compiled graph stays the own engine's, and the perf folder is `-tuned`.
TUNED         := $(filter 1,$(TUNE))
OWN_ENGINE    := $(if $(PREC_SUFFIX),$(INT8_BACKEND),$(MODEL_BACKEND))
ENGINE        := $(or $(BACKEND),$(OWN_ENGINE))
ENGINE_SUFFIX := $(if $(filter-out $(OWN_ENGINE),$(ENGINE)),_$(ENGINE))
VARIANT       := $(AIPP_SUFFIX)$(PREC_SUFFIX)$(ENGINE_SUFFIX)
RUN_DIR  := $(B)/$(SOC)/$(WEIGHTS_ID)/bs$(BS)$(VARIANT)
PERF_DIR := $(RUN_DIR)/perf-loop$(LOOP)-warmup$(WARMUP)$(if $(STREAMS),-streams$(STREAMS))$(if \
            $(PERF_SECONDS),-$(PERF_SECONDS)s)$(if $(TUNED),-tuned)
OUT_DIR  := $(RUN_DIR)/$(DATASET_ID)

ifeq ($(SOC),cpu)
  # OpenVINO's compile keeps to standard operators (--portable): its own name, so a run whose
  # default engine changed never reuses ONNX Runtime's (nor the results that came from it).
  COMPILED := $(B)/$(SOC)/$(WEIGHTS_ID)/$(MODEL)_bs$(BS)$(VARIANT)$(if $(filter openvino,$(ENGINE)),_portable).onnx
  BENCH    := $(RUN_INFER) $(PYRUN) -m npuzoo.bench --backend $(ENGINE)$(if \
              $(PREC_SUFFIX), --precision int8)$(if $(TUNED), --tune build/tuning)
  PERF_FLAGS := $(if $(STREAMS), --streams $(STREAMS))$(if $(PERF_SECONDS), --loop_seconds $(PERF_SECONDS))
  BACKEND_JSON :=

$(COMPILED): $(COMPILE_SOURCE) $(AIPP_CFG)
	$(CHECK) $<
	$(call STEP,compile,bs) $(RUN_INFER) $(PYRUN) -m npuzoo.compile $< $@ --batch $(BS)$(if $(AIPP_CFG), --aipp $(AIPP_CFG))$(if $(filter openvino,$(ENGINE)), --portable)
	$(SEAL) $@
else
  # The ModelZoo guides' commands (the ais_bench front end's CLI). ais_bench runs in the
  # python it is installed for on an Ascend host (system-wide), not in .venv.
  ATC           := atc
  ASCEND_PYTHON := python3
  AIS_BENCH     := $(ASCEND_PYTHON) -m ais_bench
  # npuzoo.ascend run: source CANN's set_env.sh when atc is not on PATH, check the chip (and,
  # for ais_bench, the .om's chip record and, where npu-smi answers, DEVICE's chip), then run
  # the command unchanged in the scratch folder $(CANN_WORK): atc writes kernel_meta/,
  # fusion_result.json and other debris into its working directory. The folder links to
  # build/, so the commands' build/... paths are the same from there.
  CANN_WORK     := $(B)/$(SOC)/cann-work
  CANN_RUN      := $(RUN_INFER) $(PYRUN) -m npuzoo.ascend run --cwd $(CANN_WORK)
  OM_BASE       := $(B)/$(SOC)/$(WEIGHTS_ID)/$(MODEL)_bs$(BS)$(AIPP_SUFFIX)
  COMPILED      := $(OM_BASE).om
  BENCH         := $(CANN_RUN) --soc $(SOC) --om $(COMPILED) --device $(DEVICE) -- $(AIS_BENCH)
  BACKEND_JSON  := $(RUN_DIR)/backend.json
  PERF_FLAGS    :=

# atc writes --output plus `.om` (or `_<os>_<arch>.om`); record-om names it $(COMPILED) and
# records the chip beside it ($(COMPILED).json). remove-om first deletes this artefact's own
# names only (not the _aipp.om of the same batch size, whose name starts the same).
$(COMPILED): $(ONNX) $(AIPP_CFG)
	$(CHECK) $(ONNX)
	$(RUN_BASE) $(PYRUN) -m npuzoo.ascend remove-om $(OM_BASE)
	$(call STEP,compile,bs) $(CANN_RUN) --soc $(SOC) -- \
	$(ATC) $(call ATC_ARGS,$(ONNX),$(OM_BASE),$(BS),$(SOC),$(AIPP_CFG))
	$(RUN_BASE) $(PYRUN) -m npuzoo.ascend record-om $(OM_BASE) --soc $(SOC) --onnx $(ONNX) --bs $(BS)
	$(SEAL) $@

# CANN, driver and ais_bench versions for the report (report write --extra).
$(BACKEND_JSON): $(COMPILED)
	$(RUN_INFER) $(PYRUN) -m npuzoo.ascend describe --soc $(SOC) --device $(DEVICE) \
	  --ais-bench "$(AIS_BENCH)" --out $@
endif

$(OUT_DIR)/infer.done: $(COMPILED) $(PREP_DIR)/.done
	rm -rf $(OUT_DIR)/results $(OUT_DIR)/results_summary.json
	$(CHECK) $(COMPILED)
	$(call STEP,inference,bs) $(BENCH) $(call INFER_ARGS,$(COMPILED),$(PREP_DIR),$(OUT_DIR),results,$(BS),$(DEVICE))
	touch $@

$(OUT_DIR)/accuracy.json: $(OUT_DIR)/infer.done $(MODEL_DIR)/postprocess.py
	$(call STEP,postprocess,bs) $(RUN_MODEL) $(PYRUN) $(MODEL_DIR)/postprocess.py $(OUT_DIR)/results $(DATASET_DIR)/val_label.txt \
	  $(OUT_DIR) accuracy.json

# The figures come from perf_summary.json alone; perf.log is the step's stamp (the runner's
# printed summary goes to the terminal, where it is worded for people).
$(PERF_DIR)/perf.log: $(COMPILED)
	rm -rf $(PERF_DIR) && mkdir -p $(PERF_DIR)
	$(CHECK) $(COMPILED)
	$(call STEP,perf,bs) $(BENCH)$(PERF_FLAGS) $(call PERF_ARGS,$(COMPILED),$(PERF_DIR),perf,$(BS),$(LOOP),$(WARMUP),$(DEVICE))
	@echo "summary: $(PERF_DIR)/perf_summary.json" > $@

# -- report ---------------------------------------------------------------------------------
# AIPP=1: the --extra JSON gains backend.aipp: true (on the CPU: onnxruntime's backend entry).
# A variant's reports have a folder of their own: reports/<model>/<aipp|int8|openvino|...>/.
VARIANT_DIR := $(subst _,-,$(patsubst _%,%,$(VARIANT)))
REPORT      := reports/$(MODEL)/$(if $(VARIANT_DIR),$(VARIANT_DIR)/)$(SOC)_bs$(BS).json
ifneq ($(AIPP_CFG),)
  REPORT_EXTRA := $(RUN_DIR)/backend-aipp.json

$(REPORT_EXTRA): $(BACKEND_JSON)
	$(RUN_INFER) $(PYRUN) -m npuzoo.aipp backend $@$(if $(BACKEND_JSON), --base $(BACKEND_JSON))
else ifneq ($(PREC_SUFFIX),)
  # int8: backend.precision and the calibration set (AIPP and int8 together are refused).
  REPORT_EXTRA := $(RUN_DIR)/backend-int8.json

$(REPORT_EXTRA): $(CALIB_DATASET_DIR)/dataset.json
	$(RUN_INFER) $(PYRUN) -m npuzoo.quantize backend $@ --calibration $<
else
  REPORT_EXTRA := $(BACKEND_JSON)
endif

# The run folder's manifest: what the report step reads (paths under build/, validated values).
RUN_MANIFEST = {"model": "$(MODEL)", "soc": "$(SOC)", "bs": $(BS), \
  "dataset": "$(DATASET_DIR)/dataset.json", "weights": "$(WEIGHTS_JSON)", \
  "accuracy": "$(OUT_DIR)/accuracy.json", "results_dir": "$(OUT_DIR)/results", \
  "prep_dir": "$(PREP_DIR)", "perf_dir": "$(PERF_DIR)", "perf_dirname": "perf", \
  "loop": $(LOOP), "warmup": $(WARMUP), "steps": "$(B)/steps.jsonl", \
  "source": "$(SOURCE_JSON)", "extra": "$(REPORT_EXTRA)", "environment": "$(ENVIRONMENT_JSON)", \
  "fp32_model": "$(if $(PREC_SUFFIX),$(ONNX))"}

$(OUT_DIR)/report.json: $(OUT_DIR)/accuracy.json $(PERF_DIR)/perf.log $(WEIGHTS_JSON) \
                        $(DATASET_DIR)/dataset.json $(SOURCE_JSON) $(REPORT_EXTRA) $(ENVIRONMENT_JSON)
	@mkdir -p $(@D) && printf '%s\n' '$(RUN_MANIFEST)' > $(OUT_DIR)/run.json
	$(call STEP,report,bs) $(RUN_REPORT) $(PYRUN) -m npuzoo.report write --manifest $(OUT_DIR)/run.json --out $@

# shared: what every batch size of a (model, dataset, weights) uses, done once;
# report: one batch size's run up to its report under build/ (a sweep task's share);
# publish: the report into reports/ (on the machine that holds the repository).
.PHONY: publish report shared source-missing
shared: $(ONNX) $(PREP_DIR)/.done $(AIPP_CFG)
report: $(OUT_DIR)/report.json
source-missing:
publish: $(OUT_DIR)/report.json
	@mkdir -p $(dir $(REPORT))
	@$(PY) -m npuzoo.report publish $< $(REPORT)$(if $(FORCE), --force)$(if $(STRICT), --strict)

# == make sweep (npuzoo/sweep.py, issue 15): sharded inference and the sweep's helpers ==========
# New targets only; the rules above keep their behaviour, and nothing above uses this section.
# SHARDS=k and SHARD=i (0..k-1) come from the driver, which picks k (at most the number of
# batches) and i; a shard is a contiguous run of whole batches of the preprocessed files in
# the order the inference reads them, so every batch holds the same images, padding included,
# as in the single-device run, and the merged results are those of the single-device run.
#   sweep-paths      print where this (model, chip, batch size) puts its outputs (key=value)
#   sweep-compiled   the compiled model alone (shard tasks compile it once, under a lock)
#   sweep-perf       the perf step and the backend description (the device's timing run)
#   sweep-shard      shard SHARD's inference: $(OUT_DIR)/shards<k>/<i>/results/
#   sweep-merge      the shards' results hard-linked into $(OUT_DIR)/results/ (checked: every
#                    file once), then $(OUT_DIR)/infer.done: `report` goes on from there
SHARDS := 1
SHARD  := 0
SHARD_ROOT := $(OUT_DIR)/shards$(SHARDS)
SHARD_DIR  := $(SHARD_ROOT)/$(SHARD)

.PHONY: sweep-paths sweep-compiled sweep-perf sweep-shard sweep-merge
sweep-paths:
	@printf '%s\n' 'out_dir=$(OUT_DIR)' 'run_dir=$(RUN_DIR)' 'perf_dir=$(PERF_DIR)' \
	  'prep_dir=$(PREP_DIR)' 'dataset_dir=$(DATASET_DIR)' 'data_link=$(DATA_LINK)' \
	  'compiled=$(COMPILED)' 'report=$(REPORT)' 'shard_root=$(SHARD_ROOT)'
sweep-compiled: $(COMPILED)
sweep-perf: $(PERF_DIR)/perf.log $(REPORT_EXTRA)
sweep-shard: $(SHARD_DIR)/infer.done

$(SHARD_DIR)/input/.done: $(PREP_DIR)/.done
	$(RUN_BASE) $(PYRUN) -m npuzoo.shards split $(PREP_DIR) $(SHARD_DIR)/input \
	  --shard $(SHARD) --shards $(SHARDS) --bs $(BS)

$(SHARD_DIR)/infer.done: $(COMPILED) $(SHARD_DIR)/input/.done
	rm -rf $(SHARD_DIR)/results $(SHARD_DIR)/results_summary.json
	$(CHECK) $(COMPILED)
	$(BENCH) $(call INFER_ARGS,$(COMPILED),$(SHARD_DIR)/input,$(SHARD_DIR),results,$(BS),$(DEVICE))
	touch $@

sweep-merge:
	$(RUN_BASE) $(PYRUN) -m npuzoo.shards merge $(SHARD_ROOT) $(OUT_DIR) --shards $(SHARDS) \
	  --prep $(PREP_DIR)
