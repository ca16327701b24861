# Export image: PyTorch 2.14.1, torchvision and onnx, for the models' pth2onnx.py (and their
# preprocess.py/postprocess.py), which never import npuzoo: FROM the python stage of
# base.Dockerfile, so only a change of these pins rebuilds it. Every model image is FROM
# this one, so the torch layers (several GB: the CUDA build, run on the CPU) are stored once.
# Build context (staged by mk/docker.mk): requirements.txt, wheels/.
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

RUN python3 -c "import torch, torchvision, onnx; print('torch', torch.__version__, 'onnx', onnx.__version__)"

USER 1000:1000
CMD ["python3"]
