# Ascend image: a CANN image (atc, the ACL runtime) plus ais_bench and its aclruntime
# backend (docs/ais_bench_compatibility.md, "Installing ais_bench" and "Ascend in Docker"),
# and the project's package for the steps around them. Built by `make images SOC=Ascend310P3`
# (mk/docker.mk); the build context is a staged folder: npuzoo/, pyproject.toml,
# requirements.txt (the project's venv), cann-requirements.txt (CANN's python),
# aclruntime-build.txt (what a source build of aclruntime needs). Run with the
# device nodes and driver mounts (mk/docker.mk, RUN_INFER). Never built in this project's CI
# (no CANN image is reachable there): hadolint and tests/test_images.py check it statically.
#
# Two pythons, kept apart:
#   python3 on PATH   CANN's own (the base image's). atc's operator compiler imports numpy from
#                     it, and CANN pins the numpy it works with (numpy 1.24.0 in the 8.3.rc2
#                     images; atc fails under numpy 2). It gets only what links against CANN:
#                     aclruntime and the ais_bench wheel, and tqdm (ais_bench's other need),
#                     all --no-deps; the build stops if its numpy changed. AIS_BENCH runs here.
#   /opt/venv         the project's tools (numpy 2, PyYAML, ...): npuzoo.ascend, npuzoo.report.
#                     Not on PATH, so nothing CANN starts can pick it up; mk/docker.mk's PYRUN
#                     names /opt/venv/bin/python3 (the same path as in the other images).
#
# BASE_IMAGE: the public CANN image a user pulls (it has the toolkit, hence atc; the
# `ascend-infer` run-time images do not). mk/docker.mk picks the one of the SOC's chip family
# (310p, 910, 910b, a3); this default is its 310p choice.
ARG BASE_IMAGE=quay.io/ascend/cann:8.3.rc2-310p-ubuntu22.04-py3.11
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
USER 0:0

# ais_bench and aclruntime, pinned: mk/docker.mk passes them from images/aclruntime-wheels.txt.
# ACLRUNTIME_URL set: the published wheel, which must be the one of this image's Python and
# architecture, checked against ACLRUNTIME_SHA256. Empty: aclruntime built here from
# ACLRUNTIME_SOURCE (COMMIT:FOLDER:SHA256 of the msit repository at MSIT_GIT_URL).
ARG ACLRUNTIME_URL=
ARG ACLRUNTIME_SHA256=
ARG AIS_BENCH_URL=
ARG AIS_BENCH_SHA256=
ARG MSIT_GIT_URL=
ARG ACLRUNTIME_SOURCE=
# Where the CANN image keeps its environment script (sourced by the entrypoint too); CANN 8.5
# and later install it as /usr/local/Ascend/cann/set_env.sh, which the entrypoint also tries.
ARG CANN_SET_ENV=/usr/local/Ascend/ascend-toolkit/set_env.sh
# PYTHONPATH keeps the CANN image's entries (its toolkit's python packages) after /zoo.
ENV CANN_SET_ENV=${CANN_SET_ENV} \
    PYTHONPATH=/zoo${PYTHONPATH:+:${PYTHONPATH}} \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The host's CA bundle only as the BuildKit secret ca_bundle, never in a layer. CANN's python3
# first (its numpy checked unchanged), then the project's venv. The source build: git fetches
# the one commit (blobs of FOLDER only), its id and FOLDER's content are checked, and pybind11,
# setuptools and wheel (hash-pinned) come into a throw-away venv, never into CANN's python3.
# (The folder's digest is taken from inside it, the way images/aclruntime-wheels.txt says.)
# hadolint ignore=DL3003
RUN --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    --mount=type=bind,source=cann-requirements.txt,target=/tmp/cann-requirements.txt \
    --mount=type=bind,source=aclruntime-build.txt,target=/tmp/aclruntime-build.txt \
    --mount=type=secret,id=ca_bundle,mode=0444 \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle GIT_SSL_CAINFO=/run/secrets/ca_bundle; fi \
 && if [ -z "${AIS_BENCH_URL}" ] || [ -z "${AIS_BENCH_SHA256}" ] || [ -z "${ACLRUNTIME_URL}${ACLRUNTIME_SOURCE}" ] \
       || { [ -n "${ACLRUNTIME_URL}" ] && [ -z "${ACLRUNTIME_SHA256}" ]; }; then \
      echo "error: pass AIS_BENCH_URL, AIS_BENCH_SHA256 and ACLRUNTIME_URL with ACLRUNTIME_SHA256 or ACLRUNTIME_SOURCE (make images SOC=... passes them from images/aclruntime-wheels.txt)" >&2; exit 1; \
    fi \
 && py_tag=$(python3 -c 'import sys; print("cp%d%d" % sys.version_info[:2])') && arch=$(uname -m) \
 && cann_numpy=$(python3 -m pip list --format=freeze 2>/dev/null | grep -i '^numpy==' || true) \
 && printf 'ais_bench @ %s --hash=sha256:%s\n' "${AIS_BENCH_URL}" "${AIS_BENCH_SHA256}" > /tmp/ais-wheels.txt \
 && if [ -n "${ACLRUNTIME_URL}" ]; then \
      case "${ACLRUNTIME_URL##*/}" in \
        "aclruntime-"*"-${py_tag}-"*"-linux_${arch}.whl") ;; \
        *) echo "error: ACLRUNTIME_URL ${ACLRUNTIME_URL##*/} is no wheel for this image's Python (${py_tag}) on ${arch}; leave ACLRUNTIME_URL empty to build aclruntime from source" >&2; exit 1 ;; \
      esac; \
      printf 'aclruntime @ %s --hash=sha256:%s\n' "${ACLRUNTIME_URL}" "${ACLRUNTIME_SHA256}" >> /tmp/ais-wheels.txt; \
    else \
      commit=${ACLRUNTIME_SOURCE%%:*} && folder=${ACLRUNTIME_SOURCE#*:} && digest=${folder#*:} && folder=${folder%%:*}; \
      { git init -q /tmp/msit && git -C /tmp/msit remote add origin "${MSIT_GIT_URL}" \
        && git -C /tmp/msit fetch -q --depth 1 --filter=blob:none origin "${commit}" \
        && [ "$(git -C /tmp/msit rev-parse FETCH_HEAD)" = "${commit}" ] \
        && git -C /tmp/msit checkout -q FETCH_HEAD -- "${folder}"; } > /tmp/aclruntime-build.log 2>&1 \
        || { tail -n 5 /tmp/aclruntime-build.log >&2; echo "error: fetching ${MSIT_GIT_URL} at ${commit} failed; aclruntime has no wheel for ${py_tag} on ${arch} and could not be built" >&2; exit 1; }; \
      got=$(cd "/tmp/msit/${folder}" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1); \
      if [ "${got}" != "${digest}" ]; then echo "error: ${folder} at ${commit} has content sha256 ${got}, not the pinned ${digest}" >&2; exit 1; fi; \
      { python3 -m venv /tmp/aclruntime-venv \
        && /tmp/aclruntime-venv/bin/pip install --no-cache-dir --require-hashes -r /tmp/aclruntime-build.txt \
        && /tmp/aclruntime-venv/bin/pip wheel --no-cache-dir --no-build-isolation --no-deps -w /tmp/aclruntime-wheel "/tmp/msit/${folder}" \
        && python3 -m pip install --no-cache-dir --no-deps /tmp/aclruntime-wheel/aclruntime-*.whl; } \
        >> /tmp/aclruntime-build.log 2>&1 \
        || { tail -n 30 /tmp/aclruntime-build.log >&2; echo "error: building aclruntime from ${folder} at ${commit} failed (log above); aclruntime has no wheel for ${py_tag} on ${arch}" >&2; exit 1; }; \
      rm -rf /tmp/msit /tmp/aclruntime-venv /tmp/aclruntime-wheel /tmp/aclruntime-build.log; \
    fi \
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
# loads libascendcl, libacl_dvpp and libacl_cblas, which need the driver's libascend_hal; with
# no driver in a build, the toolkit's stub libraries stand in for this check only: CANN up to
# 8.3 keeps them in runtime/lib64/stub (some releases in stub/<arch>), CANN 8.5 and later the
# libascend_hal stub in devlib; images/README.md), and python3 on PATH not the project's venv.
RUN . /usr/local/bin/npuzoo-cann-env \
 && command -v atc > /dev/null || { echo "error: atc not found; BASE_IMAGE must be a CANN image with the toolkit (ascend-toolkit), not a run-time-only one" >&2; exit 1; } \
 && atc_usage=$(atc --help 2>&1 || true) \
 && [ -n "${atc_usage}" ] || { echo "error: atc --help printed nothing" >&2; exit 1; } \
 && home="${ASCEND_HOME_PATH:-${ASCEND_TOOLKIT_HOME:-/usr/local/Ascend/ascend-toolkit/latest}}" \
 && stubs="${home}/runtime/lib64/stub:${home}/runtime/lib64/stub/$(uname -m):${home}/devlib" \
 && LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}:${stubs}" python3 -m ais_bench --help > /dev/null \
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
