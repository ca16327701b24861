# Ascend image: a CANN image (atc, the ACL runtime) plus ais_bench and its aclruntime
# backend (docs/ais_bench_compatibility.md, "Installing ais_bench" and "Ascend in Docker"),
# and the project's package for the steps around them. Built by `make images SOC=Ascend310P3 ACLRUNTIME_SHA256=... AIS_BENCH_SHA256=...`
# (mk/docker.mk); the build context is a staged folder: npuzoo/, pyproject.toml,
# requirements.txt (the project's venv), cann-requirements.txt (CANN's python). Run with the
# device nodes and driver mounts (mk/docker.mk, RUN_INFER). Never built in this project's CI
# (no CANN image is reachable there): hadolint and tests/test_images.py check it statically.
#
# Two pythons, kept apart:
#   python3 on PATH   CANN's own (the base image's). atc's operator compiler imports numpy from
#                     it, and CANN pins the numpy it works with (numpy 1.24.0 in the 8.3.rc2
#                     images; atc fails under numpy 2). It gets only what links against CANN:
#                     the aclruntime and ais_bench wheels, and tqdm (ais_bench's other need),
#                     all --no-deps; the build stops if its numpy changed. AIS_BENCH runs here.
#   /opt/venv         the project's tools (numpy 2, PyYAML, ...): npuzoo.ascend, npuzoo.report.
#                     Not on PATH, so nothing CANN starts can pick it up; mk/docker.mk's PYRUN
#                     names /opt/venv/bin/python3 (the same path as in the other images).
#
# BASE_IMAGE: the public CANN image a user pulls (it has the toolkit, hence atc; the
# `ascend-infer` run-time images do not). Its python3 must match the aclruntime wheel (cp311).
ARG BASE_IMAGE=quay.io/ascend/cann:8.3.rc2-310p-ubuntu22.04-py3.11
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
USER 0:0

# The two wheels, from their URLs, each checked against its sha256 (pip --require-hashes).
# No default hashes: pass the ones of the files you trust.
ARG AIS_WHEELS_URL=https://aisbench.obs.myhuaweicloud.com/packet/ais_bench_infer/0.0.2/ait
ARG ACLRUNTIME_URL=${AIS_WHEELS_URL}/aclruntime-0.0.2-cp311-cp311-linux_x86_64.whl
ARG ACLRUNTIME_SHA256=
ARG AIS_BENCH_URL=${AIS_WHEELS_URL}/ais_bench-0.0.2-py3-none-any.whl
ARG AIS_BENCH_SHA256=
# Where the CANN image keeps its environment script (sourced by the entrypoint too); CANN 8.5
# and later install it as /usr/local/Ascend/cann/set_env.sh, which the entrypoint also tries.
ARG CANN_SET_ENV=/usr/local/Ascend/ascend-toolkit/set_env.sh
# PYTHONPATH keeps the CANN image's entries (its toolkit's python packages) after /zoo.
ENV CANN_SET_ENV=${CANN_SET_ENV} \
    PYTHONPATH=/zoo${PYTHONPATH:+:${PYTHONPATH}} \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The host's CA bundle only as the BuildKit secret ca_bundle, never in a layer. CANN's python3
# first (its numpy checked unchanged), then the project's venv.
RUN --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    --mount=type=bind,source=cann-requirements.txt,target=/tmp/cann-requirements.txt \
    --mount=type=secret,id=ca_bundle,mode=0444 \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && if [ -z "${ACLRUNTIME_SHA256}" ] || [ -z "${AIS_BENCH_SHA256}" ]; then \
      echo "error: pass --build-arg ACLRUNTIME_SHA256=<sha256> and AIS_BENCH_SHA256=<sha256> (make images ... ACLRUNTIME_SHA256=... AIS_BENCH_SHA256=...)" >&2; exit 1; \
    fi \
 && cann_numpy=$(python3 -m pip list --format=freeze 2>/dev/null | grep -i '^numpy==' || true) \
 && printf 'aclruntime @ %s --hash=sha256:%s\nais_bench @ %s --hash=sha256:%s\n' \
      "${ACLRUNTIME_URL}" "${ACLRUNTIME_SHA256}" "${AIS_BENCH_URL}" "${AIS_BENCH_SHA256}" > /tmp/ais-wheels.txt \
 && python3 -m pip install --no-cache-dir --no-deps -r /tmp/cann-requirements.txt \
 && python3 -m pip install --no-cache-dir --no-deps --require-hashes -r /tmp/ais-wheels.txt \
 && rm /tmp/ais-wheels.txt \
 && now=$(python3 -m pip list --format=freeze 2>/dev/null | grep -i '^numpy==' || true) \
 && if [ "${now}" != "${cann_numpy}" ]; then \
      echo "error: CANN's python3 numpy changed (${cann_numpy:-none} -> ${now:-none}); atc needs the one CANN installed" >&2; exit 1; \
    fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/python3 -m pip install --no-cache-dir -r /tmp/requirements.txt

# Every process starts with CANN's environment (atc, libascendcl) set: CANN_SET_ENV, else the
# CANN 8.5+ location (npuzoo-cann-env, sourced by the entrypoint and by the check below). The
# single quotes are the script's text, expanded when it runs.
# hadolint ignore=SC2016
RUN printf '%s\n' \
      'for f in "${CANN_SET_ENV}" /usr/local/Ascend/ascend-toolkit/set_env.sh /usr/local/Ascend/cann/set_env.sh; do' \
      '  if [ -f "$f" ]; then source "$f"; break; fi' \
      'done' > /usr/local/bin/npuzoo-cann-env \
 && printf '%s\n' '#!/bin/bash' 'source /usr/local/bin/npuzoo-cann-env' 'exec "$@"' > /usr/local/bin/npuzoo-entrypoint \
 && chmod 644 /usr/local/bin/npuzoo-cann-env \
 && chmod 755 /usr/local/bin/npuzoo-entrypoint

# The tools must be there at build time, not at the first run on a chip: atc on the PATH
# and printing its usage, ais_bench importable with its CLI in CANN's python3 (aclruntime
# loads the ACL libraries; with no driver in a build, the toolkit's stub libraries stand in
# for this check only), and python3 on PATH not the project's venv.
RUN . /usr/local/bin/npuzoo-cann-env \
 && command -v atc > /dev/null || { echo "error: atc not found; BASE_IMAGE must be a CANN image with the toolkit (ascend-toolkit), not a run-time-only one" >&2; exit 1; } \
 && atc_usage=$(atc --help 2>&1 || true) \
 && [ -n "${atc_usage}" ] || { echo "error: atc --help printed nothing" >&2; exit 1; } \
 && stub="${ASCEND_TOOLKIT_HOME:-/usr/local/Ascend/ascend-toolkit/latest}/runtime/lib64/stub" \
 && LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}:${stub}" python3 -m ais_bench --help > /dev/null \
 && [ "$(command -v python3)" != /opt/venv/bin/python3 ] \
 && /opt/venv/bin/python3 -c "import numpy, yaml"

COPY pyproject.toml /zoo/pyproject.toml
COPY npuzoo /zoo/npuzoo

# The project's steps import in the venv (npuzoo.ascend, npuzoo.report, npuzoo.aipp).
RUN /opt/venv/bin/python3 -c "import npuzoo.ascend, npuzoo.report, npuzoo.aipp, npuzoo.config"

# A non-root user, in the chip's group (HwHiAiUser) where the image has it.
RUN if ! id zoo > /dev/null 2>&1; then useradd --create-home --uid 10001 --shell /bin/bash zoo; fi \
 && if getent group HwHiAiUser > /dev/null; then usermod -aG HwHiAiUser zoo; fi
USER 10001
WORKDIR /zoo
ENTRYPOINT ["/usr/local/bin/npuzoo-entrypoint"]
CMD ["python3", "-m", "ais_bench", "--help"]
