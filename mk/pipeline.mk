# The pipeline of one model for one chip and one batch size, as file targets: rules only.
# npuzoo/run.py (`make <model>`, and npuzoo/sweep.py) decides the run once, as a plan
# (npuzoo/plan.py), and calls
#   make -f mk/pipeline.mk PLAN=build/<model>/plans/<hash>.mk <target>
# The plan file defines every variable the rules read: the validated values (MODEL, BS, SOC,
# RUNNER, DEVICE, LOOP, WARMUP, N), the content ids (DATASET_ID, WEIGHTS_ID, PREP_KEY, ...),
# the engine and variant, every artefact path and the engine's flags. No user-typed path
# appears: DATA is the link $(DATA_LINK), a WEIGHTS file a copy in build/<model>/weights/store/.
# Ids name content: new bytes, new folders. build/<model>/model.mk holds model.yaml's facts
# (the weights file name, the ATC_ARGS/INFER_ARGS/PERF_ARGS command functions of
# npuzoo/commands.py).
#
# build/<model>/
#   model.mk                          Make variables generated from model.yaml
#   plans/<hash>.mk, <hash>.json      a run's plan and its report manifest (npuzoo/plan.py)
#   .lock                             held by the run in progress (npuzoo/run.py)
#   weights/<file>, <file>.accepted.json    published download, the content accepted for it
#   weights/store/<sha256>.pth        a user's WEIGHTS file, copied
#   weights/<weights id>.json         what the run used (id: random, or
#                                     <published|custom|unverified>-<sha256[:12]>)
#   refs/                             links to the shared sets below that this model uses
#   src/upstream, src/source.json     patched upstream tree and its record (tree hash)
#   onnx/<weights id>/<model>.onnx    export, once per model and weights (+ .sha256: its seal)
#   onnx/<weights id>/<model>_int8-<quantiser>-<calib prep key>.onnx    PRECISION=int8: the
#                                     quantised export (quantiser: npuzoo.plan.QUANTIZER_WORDS)
#   <SOC>/<weights id>/<model>_bs<BS><variant>[_portable].onnx|.om   compiled, per chip and BS
#   <SOC>/<weights id>/bs<BS><variant>/backend.json          Ascend: CANN/driver/ais_bench versions
#   <SOC>/<weights id>/bs<BS><variant>/perf-loop<L>-warmup<W>[-streams<S>][-<P>s][-tuned]/
#   <SOC>/<weights id>/bs<BS><variant>/<dataset id>/results/, accuracy.json, report.json
# build/inputs/<dataset id>.data      link to the DATA folder (id: name-<content hash>-n<N>)
# build/data/<dataset id>/            selected images (links), labels, dataset.json (shared)
# build/prep/<prep key>/*.bin         preprocessed once per key, shared by runs (npuzoo/store.py)
# and reports/<model>/[<variant>/]<SOC>_bs<BS>.json, published from report.json.
# <variant> (npuzoo.plan.variant_label): empty for the model's own run, else `aipp`, `int8`,
# int8's quantiser when not the engine's (`int8-nncf`), the engine when not the run's own
# (`openvino`, `int8-onnxruntime`); in build/ names `_`-joined, int8's quantiser always named.
#
# AIPP=1: preprocess.py --uint8 writes raw uint8 HWC files (a prep key of its own, a quarter of
# the float32 size) and build/<model>/aipp.cfg (from model.yaml) moves the normalisation into
# the model (atc --insert_op_conf, or npuzoo.compile --aipp on the CPU).

include mk/outside.mk
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

ifeq ($(PLAN),)
  $(error PLAN is not set: run `make <model>`, which writes the plan file this makefile reads)
endif
include $(PLAN)

# Made before it is read (and remade by its rule when stale): a first reading without it would
# take its variables from the environment.
ifeq ($(wildcard $(B)/model.mk),)
  $(shell mkdir -p $(B) && $(PY) -m npuzoo.config makevars $(MODEL) > $(B)/model.mk.tmp \
    && mv $(B)/model.mk.tmp $(B)/model.mk)
endif
include $(B)/model.mk

# Every step's command is timed (npuzoo/steps.py): build/<model>/steps.jsonl, the table at the
# end of `make <model>` and the report's `timings`. $(call STEP,name[,bs]): bs = per batch size.
STEP = $(PY) -m npuzoo.steps run $(B)/steps.jsonl $(1)$(if $(2), --bs $(BS)) --

# Where each step runs. RUNNER=local: the .venv. RUNNER=docker: mk/docker.mk sets these
# prefixes to `docker run ... <image>` (base: tooling; model: the model folder's scripts and
# upstream source; infer: ONNX Runtime and the runner) and PYRUN to the image's python3; the
# images' hashes come with the plan (npuzoo/run.py computed them once).
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
# The published file, downloaded once (run.py verifies its content on every run).
.PHONY: fetch-weights
fetch-weights: $(B)/weights/$(WEIGHTS_FILE)
$(B)/weights/$(WEIGHTS_FILE):
	$(call STEP,weights) $(RUN_BASE) $(PYRUN) -m npuzoo.weights fetch $(MODEL) $@

# Written by npuzoo/run.py before this makefile runs; missing only when the run is shown
# (make -n: the plan says so) or this makefile is called by hand.
ifeq ($(SHOW_ONLY),1)
  MISSING_INPUT = @: $@ is written by npuzoo/run.py when the run starts
else
  MISSING_INPUT = @echo "error: $@: missing; run \`make $(MODEL)\` (npuzoo/run.py writes it)" >&2; exit 2
endif
$(WEIGHTS_JSON):
	$(MISSING_INPUT)
build/inputs/%.data:
	$(MISSING_INPUT)

# -- dataset and preprocessing: shared sets, keyed by content (npuzoo/store.py) --------------
# The selection of DATA's images is made once per dataset id, the preprocessed set once per
# PREP_KEY (dataset id + what changes the bytes), whichever model asks first; `store once`
# holds the set's lock, so a concurrent run waits and then reuses it.
ONCE  := $(PY) -m npuzoo.store once
# Exports, quantised graphs and compiled models: sealed with their sha256 when written, checked
# before a step reads them (npuzoo/store.py; the driver remakes a mismatching one before a run).
SEAL  := $(PY) -m npuzoo.store seal
CHECK := $(PY) -m npuzoo.store check

# The DATA folder's path reaches the command only through the link (quoted substitution).
$(DATASET_DIR)/dataset.json: | $(DATA_LINK)
	$(call STEP,data) $(ONCE) --lock $(DATASET_DIR).lock --stamp $@ -- \
	  $(RUN_BASE) $(PYRUN) -m npuzoo.dataset prepare "$$(readlink -f $(DATA_LINK))" $(DATASET_DIR) $(if $(N),--limit $(N))

$(PREP_DIR)/.done: $(DATASET_DIR)/dataset.json
	$(call STEP,preprocess) $(ONCE) --lock $(PREP_DIR).lock --stamp $@ --clean $(PREP_DIR) \
	  --prep-check $(DATASET_DIR)/dataset.json $(PREP_BYTES) -- \
	  $(RUN_PREP) $(PREPROCESS) $(DATASET_DIR)/val $(PREP_DIR)$(if $(AIPP_CFG), --uint8)

# -- upstream source (models whose model.yaml lists upstream.sources: SOURCE_JSON set) ----------
# npuzoo.source tries each source in order (git clone at the pinned commit, else the PyPI
# release with its pinned sha256), applies that source's patch with `patch -p1`, and records
# what it used and the patched tree's hash; the export re-verifies the tree against it.
ifneq ($(SOURCE_JSON),)
# A record without its tree (someone deleted build/<m>/src/upstream) is stale too.
$(SOURCE_JSON): $(MODEL_DIR)/model.yaml $(wildcard $(MODEL_DIR)/*.diff $(MODEL_DIR)/*.patch) \
                npuzoo/source.py $(if $(wildcard $(SOURCE_DIR)),,source-missing)
	$(call STEP,source) $(RUN_BASE) $(PYRUN) -m npuzoo.source fetch $(MODEL) $(SOURCE_DIR) --record $@
endif

# -- export -------------------------------------------------------------------------------
# What the export reads: the weights, the upstream tree's record (patch included) and
# EXPORT_INPUTS, a file named by the export key (npuzoo/store.py: pth2onnx.py and the folder's
# other modules, model.yaml's fields the export reads): a new key, a new file, a new export;
# an edit the export does not read (another step's script, model.yaml's references) changes
# nothing.
$(EXPORT_INPUTS):
	@mkdir -p $(@D) && touch $@

$(ONNX): $(WEIGHTS_JSON) $(SOURCE_JSON) $(EXPORT_INPUTS)
	@mkdir -p $(@D)
	$(if $(SOURCE_JSON),$(RUN_BASE) $(PYRUN) -m npuzoo.source verify $(MODEL) $(SOURCE_DIR) --record $(SOURCE_JSON))
	$(call STEP,export) $(RUN_MODEL) $(PYRUN) $(MODEL_DIR)/pth2onnx.py $(WEIGHTS_PATH) $@$(if $(SOURCE_DIR), --source $(SOURCE_DIR))
	$(SEAL) $@

# The AIPP config of atc --insert_op_conf (AIPP=1): uint8 RGB in, model.yaml's mean/std applied.
ifneq ($(AIPP_CFG),)
$(AIPP_CFG): $(MODEL_DIR)/model.yaml npuzoo/aipp.py
	$(RUN_BASE) $(PYRUN) -m npuzoo.aipp config $(MODEL) $@
endif

# -- PRECISION=int8 (CPU): the export quantised statically (npuzoo/quantize.py, QUANTIZER) -------
# Calibrated on CALIB images that are not evaluated: DATA's labelled images after the first N
# (offset CALIB_OFFSET), or the first CALIB of CALIB_DATA; npuzoo/run.py identifies them by
# content like the evaluation set, and they are selected and preprocessed the same way.
ifneq ($(INT8),)
$(CALIB_DATASET_DIR)/dataset.json: | $(CALIB_LINK)
	$(call STEP,data) $(ONCE) --lock $(CALIB_DATASET_DIR).lock --stamp $@ -- \
	  $(RUN_BASE) $(PYRUN) -m npuzoo.dataset prepare "$$(readlink -f $(CALIB_LINK))" \
	  $(CALIB_DATASET_DIR) --limit $(CALIB) --offset $(CALIB_OFFSET)

$(CALIB_PREP_DIR)/.done: $(CALIB_DATASET_DIR)/dataset.json
	$(call STEP,preprocess) $(ONCE) --lock $(CALIB_PREP_DIR).lock --stamp $@ --clean $(CALIB_PREP_DIR) \
	  --prep-check $(CALIB_DATASET_DIR)/dataset.json $(PREP_BYTES) -- \
	  $(RUN_PREP) $(PREPROCESS) $(CALIB_DATASET_DIR)/val $(CALIB_PREP_DIR)

$(COMPILE_SOURCE): $(ONNX) $(CALIB_PREP_DIR)/.done npuzoo/quantize.py
	$(CHECK) $(ONNX)
	$(call STEP,quantize) $(RUN_INFER) $(PYRUN) -m npuzoo.quantize model $(ONNX) $(CALIB_PREP_DIR) $@ \
	  --method $(QUANTIZER)
	$(SEAL) $@
endif

# -- compile, infer, perf: the chip-specific commands -----------------------------------------
# CPU: the plan's ENGINE (BENCH_FLAGS: --backend, int8, the tuning cache of npuzoo/tune.py when
# the runner picks engine and streams itself) runs the graph compiled for it (COMPILE_FLAGS:
# the batch fixed, AIPP, OpenVINO's --portable); PERF_FLAGS: streams and the perf loop's time.
ifeq ($(SOC),cpu)
  BENCH := $(RUN_INFER) $(PYRUN) -m npuzoo.bench $(BENCH_FLAGS)

$(COMPILED): $(COMPILE_SOURCE) $(AIPP_CFG)
	$(CHECK) $<
	$(call STEP,compile,bs) $(RUN_INFER) $(PYRUN) -m npuzoo.compile $< $@ $(COMPILE_FLAGS)
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
  BENCH         := $(CANN_RUN) --soc $(SOC) --om $(COMPILED) --device $(DEVICE) -- $(AIS_BENCH)

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

# CANN, driver and ais_bench versions for the report (the manifest's `extra`).
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
	$(call STEP,perf,bs) $(BENCH) $(PERF_FLAGS) $(call PERF_ARGS,$(COMPILED),$(PERF_DIR),perf,$(BS),$(LOOP),$(WARMUP),$(DEVICE))
	@echo "summary: $(PERF_DIR)/perf_summary.json" > $@

# -- report ---------------------------------------------------------------------------------
# REPORT_EXTRA: AIPP=1: backend.aipp: true (added to the Ascend description, if any); int8:
# backend.precision and the calibration set (AIPP and int8 together are refused); else the
# Ascend description or nothing.
ifneq ($(AIPP_CFG),)
$(REPORT_EXTRA): $(BACKEND_JSON)
	$(RUN_INFER) $(PYRUN) -m npuzoo.aipp backend $@$(if $(BACKEND_JSON), --base $(BACKEND_JSON))
else ifneq ($(INT8),)
$(REPORT_EXTRA): $(CALIB_DATASET_DIR)/dataset.json
	$(RUN_INFER) $(PYRUN) -m npuzoo.quantize backend $@ --calibration $< --method $(QUANTIZER)
endif

# The manifest (the plan's report fields: paths under build/, validated values, the variant
# and engine) is written by npuzoo/run.py with the plan.
$(OUT_DIR)/report.json: $(OUT_DIR)/accuracy.json $(PERF_DIR)/perf.log $(WEIGHTS_JSON) \
                        $(DATASET_DIR)/dataset.json $(SOURCE_JSON) $(REPORT_EXTRA) $(ENVIRONMENT_JSON)
	@mkdir -p $(@D)
	$(call STEP,report,bs) $(RUN_REPORT) $(PYRUN) -m npuzoo.report write --manifest $(MANIFEST) \
	  $(if $(ENVIRONMENT_JSON),--environment $(ENVIRONMENT_JSON) )--out $@

# shared: what every batch size of a (model, dataset, weights) uses, done once;
# report: one batch size's run up to its report under build/ (a sweep task's share);
# publish: the report into reports/ (on the machine that holds the repository).
.PHONY: publish report shared source-missing
shared: $(ONNX) $(PREP_DIR)/.done $(AIPP_CFG)
report: $(OUT_DIR)/report.json
source-missing:
publish: $(OUT_DIR)/report.json
	@mkdir -p $(dir $(REPORT))
	@$(PY) -m npuzoo.report publish $< $(REPORT) $(PUBLISH_FLAGS)

# == make sweep (npuzoo/sweep.py, issue 15): sharded inference and the sweep's helpers ==========
# New targets only; the rules above keep their behaviour, and nothing above uses this section.
# SHARDS=k and SHARD=i (0..k-1) come from the driver, which picks k (at most the number of
# batches) and i; a shard is a contiguous run of whole batches of the preprocessed files in
# the order the inference reads them, so every batch holds the same images, padding included,
# as in the single-device run, and the merged results are those of the single-device run.
#   sweep-compiled   the compiled model alone (shard tasks compile it once, under a lock)
#   sweep-perf       the perf step and the backend description (the device's timing run)
#   sweep-shard      shard SHARD's inference: $(OUT_DIR)/shards<k>/<i>/results/
#   sweep-merge      the shards' results hard-linked into $(OUT_DIR)/results/ (checked: every
#                    file once), then $(OUT_DIR)/infer.done: `report` goes on from there
SHARDS := 1
SHARD  := 0
SHARD_ROOT := $(OUT_DIR)/shards$(SHARDS)
SHARD_DIR  := $(SHARD_ROOT)/$(SHARD)

.PHONY: sweep-compiled sweep-perf sweep-shard sweep-merge
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
