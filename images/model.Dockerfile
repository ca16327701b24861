# One model's image, from the shared export image: the model folder is the build context.
#
#   docker build -f images/model.Dockerfile -t npuzoo/<name>:model-<hash> models/<name>
#
# Bakes in the folder (scripts, model.yaml, patch, requirements) at /zoo/models/<name>, less
# what model.Dockerfile.dockerignore (this file's own .dockerignore, applied by BuildKit for
# any context) leaves out: build outputs, caches, weights and models, .venv, editor files. And,
# for models with an upstream source, the patched tree at /zoo/upstream. That tree is made
# on the host by the pipeline's source step (build/<name>/src/upstream) and enters this build
# as an image: UPSTREAM_IMAGE (mk/docker.mk makes it with `docker import`, which needs no
# Dockerfile and no second context). With buildx, a named context does the same:
# `--build-arg UPSTREAM_IMAGE=upstream --build-context upstream=build/<name>/src/upstream`.
# Left at `scratch`, /zoo/upstream is empty: enough for folders with no upstream (MobileNetV1,
# VoVNet39), so a folder copied anywhere builds with this file alone.
ARG BASE_IMAGE=npuzoo/export:latest
ARG UPSTREAM_IMAGE=scratch
FROM ${UPSTREAM_IMAGE} AS upstream

FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
USER 1000:1000

COPY --chown=zoo:zoo . /zoo/model/
COPY --from=upstream --chown=zoo:zoo / /zoo/upstream/

# The folder answers to its own name (model.yaml `name`), as models/<name>/ in the repository.
RUN name=$(python3 -c "import yaml; print(yaml.safe_load(open('/zoo/model/model.yaml'))['name'])") \
 && install -d /zoo/models \
 && ln -s /zoo/model "/zoo/models/${name}" \
 && rm -rf /zoo/model/__pycache__

# The folder's exact pins. The export image already satisfies them, so nothing is fetched;
# a pin it lacks is installed from the index (CA bundle only via the secret ca_bundle), or
# fails the build when mk/docker.mk passes PIP_INSTALL_ARGS=--no-index (offline builds).
ARG PIP_INSTALL_ARGS=""
# hadolint ignore=SC2086
RUN --mount=type=secret,id=ca_bundle,mode=0444 \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && if [ -f /zoo/model/requirements.txt ]; then \
      pip install --no-cache-dir ${PIP_INSTALL_ARGS} -r /zoo/model/requirements.txt; \
    fi

WORKDIR /zoo
USER 1000:1000
CMD ["python3"]
