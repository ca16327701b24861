# CPU inference image: ONNX Runtime under the project's runner (npuzoo.bench, the
# ais_bench-compatible CLI) and the CPU compile step (npuzoo.compile). FROM the python stage of
# base.Dockerfile; npuzoo comes last, so a change to it rebuilds one small layer.
# Build context (staged by mk/docker.mk): npuzoo/, pyproject.toml, requirements.txt, wheels/.
ARG BASE_IMAGE=npuzoo/python:latest
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
USER 1000:1000

# Offline from the host-filled wheelhouse; CA bundle only as the BuildKit secret ca_bundle.
ARG PIP_INSTALL_ARGS="--no-index --find-links /tmp/wheels"
# hadolint ignore=SC2086
RUN --mount=type=bind,source=wheels,target=/tmp/wheels \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    --mount=type=secret,id=ca_bundle,mode=0444 \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install --no-cache-dir ${PIP_INSTALL_ARGS} -r /tmp/requirements.txt

# The project's package (PYTHONPATH=/zoo); in a pipeline step the repository's own copy, the
# same bytes this image's tag hashes, is the working directory and is imported first.
COPY --chown=zoo:zoo pyproject.toml /zoo/pyproject.toml
COPY --chown=zoo:zoo npuzoo /zoo/npuzoo

# The runner must start: a broken ONNX Runtime fails the build, not the first pipeline run.
RUN python3 -m npuzoo.bench --help > /dev/null \
 && python3 -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__)"

USER 1000:1000
CMD ["python3", "-m", "npuzoo.bench", "--help"]
