# Base microtool image, in two stages:
#   python  Python 3.11 (Debian bookworm's python3) in /opt/venv with numpy, Pillow, PyYAML,
#           Jinja2 and tqdm, git and patch: the common floor of every CPU image
#           (`--target python`, tagged npuzoo/python; export and infer are built FROM it,
#           so a change to npuzoo never rebuilds the torch layers)
#   base    + the project's package at /zoo/npuzoo (the default, final stage)
# The steps that only need npuzoo run in base: weights fetch/describe, dataset prepare,
# upstream source fetch, report write. Built by `make images` (mk/docker.mk), whose build
# context is a staged folder: npuzoo/, pyproject.toml, requirements.txt, wheels/.
#
# BASE_IMAGE: any Debian bookworm image; the default is the public one a user would pull,
# CI passes local/debian:bookworm (images/local-base.sh) because no registry is reachable.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE} AS python

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Debian's own packages, unpinned on purpose: the suite (bookworm) is the pin, and apt in a
# minbase root knows no other versions to choose from.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv git patch ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A non-root user owns the virtual environment, so the images built FROM this one install
# their packages as that user and never switch back to root.
RUN useradd --create-home --uid 1000 --shell /bin/bash zoo \
 && python3 -m venv /opt/venv \
 && install -d -o zoo -g zoo /zoo \
 && chown -R zoo:zoo /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONPATH=/zoo \
    HOME=/tmp
USER 1000:1000
WORKDIR /zoo

# Offline by default: wheels come from the wheelhouse the Makefile fills on the host
# (build arg PIP_INSTALL_ARGS="" installs from the index instead). The host's CA bundle is
# used only when it is passed as the BuildKit secret `ca_bundle`; it is never in a layer.
ARG PIP_INSTALL_ARGS="--no-index --find-links /tmp/wheels"
# hadolint ignore=SC2086
RUN --mount=type=bind,source=wheels,target=/tmp/wheels \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    --mount=type=secret,id=ca_bundle,mode=0444 \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install --no-cache-dir ${PIP_INSTALL_ARGS} -r /tmp/requirements.txt

FROM python AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
USER 1000:1000

# The project's package, importable as `npuzoo` (PYTHONPATH=/zoo). In a pipeline step the
# repository is mounted at its own path and is the working directory, so its npuzoo, the
# same bytes this image's tag hashes, is the one imported and finds models/<name>/.
COPY --chown=zoo:zoo pyproject.toml /zoo/pyproject.toml
COPY --chown=zoo:zoo npuzoo /zoo/npuzoo
RUN python3 -c "import npuzoo.config, npuzoo.dataset, npuzoo.weights, npuzoo.report" \
 && git --version && patch --version | head -n 1

USER 1000:1000
CMD ["python3"]
