# Ascend image: a CANN image (atc, the ACL runtime) plus ais_bench and its aclruntime
# backend (ais_bench_contract.md §7, §10), and the project's package for the steps around
# them. Built by `make images SOC=Ascend310P3 ACLRUNTIME_SHA256=... AIS_BENCH_SHA256=...`
# (mk/docker.mk); the build context is a staged folder: npuzoo/, pyproject.toml,
# requirements.txt. Run with the device nodes and driver mounts (mk/docker.mk, RUN_INFER).
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
# Where the CANN image keeps its environment script (sourced by the entrypoint too).
ARG CANN_SET_ENV=/usr/local/Ascend/ascend-toolkit/set_env.sh
ENV CANN_SET_ENV=${CANN_SET_ENV} \
    PYTHONPATH=/zoo \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The host's CA bundle only as the BuildKit secret ca_bundle, never in a layer.
RUN --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    --mount=type=secret,id=ca_bundle,mode=0444 \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && if [ -z "${ACLRUNTIME_SHA256}" ] || [ -z "${AIS_BENCH_SHA256}" ]; then \
      echo "error: pass --build-arg ACLRUNTIME_SHA256=<sha256> and AIS_BENCH_SHA256=<sha256> (make images ... ACLRUNTIME_SHA256=... AIS_BENCH_SHA256=...)" >&2; exit 1; \
    fi \
 && printf 'aclruntime @ %s --hash=sha256:%s\nais_bench @ %s --hash=sha256:%s\n' \
      "${ACLRUNTIME_URL}" "${ACLRUNTIME_SHA256}" "${AIS_BENCH_URL}" "${AIS_BENCH_SHA256}" > /tmp/ais-wheels.txt \
 && python3 -m pip install --no-cache-dir -r /tmp/requirements.txt \
 && python3 -m pip install --no-cache-dir --no-deps --require-hashes -r /tmp/ais-wheels.txt \
 && rm /tmp/ais-wheels.txt

# Every process starts with CANN's environment (atc, libascendcl) set. The single quotes
# are the script's text, expanded when it runs.
# hadolint ignore=SC2016
RUN printf '%s\n' '#!/bin/bash' \
      'if [ -f "${CANN_SET_ENV}" ]; then source "${CANN_SET_ENV}"; fi' \
      'exec "$@"' > /usr/local/bin/npuzoo-entrypoint \
 && chmod 755 /usr/local/bin/npuzoo-entrypoint

# The tools must be there at build time, not at the first run on a chip: atc on the PATH
# and printing its usage, ais_bench importable with its CLI.
RUN if [ -f "${CANN_SET_ENV}" ]; then . "${CANN_SET_ENV}"; fi \
 && command -v atc > /dev/null || { echo "error: atc not found; BASE_IMAGE must be a CANN image with the toolkit (ascend-toolkit), not a run-time-only one" >&2; exit 1; } \
 && atc_usage=$(atc --help 2>&1 || true) \
 && [ -n "${atc_usage}" ] || { echo "error: atc --help printed nothing" >&2; exit 1; } \
 && python3 -m ais_bench --help > /dev/null

COPY pyproject.toml /zoo/pyproject.toml
COPY npuzoo /zoo/npuzoo

# A non-root user, in the chip's group (HwHiAiUser) where the image has it.
RUN if ! id zoo > /dev/null 2>&1; then useradd --create-home --uid 10001 --shell /bin/bash zoo; fi \
 && if getent group HwHiAiUser > /dev/null; then usermod -aG HwHiAiUser zoo; fi
USER 10001
WORKDIR /zoo
ENTRYPOINT ["/usr/local/bin/npuzoo-entrypoint"]
CMD ["python3", "-m", "ais_bench", "--help"]
