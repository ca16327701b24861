#!/usr/bin/env bash
# Make the Debian base image locally, for machines that reach the Debian mirror but no
# container registry (docs/design.md, "CI on machines without a container registry").
#
#   images/local-base.sh [TAG]            default TAG: local/debian:bookworm
#
# `debootstrap --variant=minbase bookworm` into a temporary folder, then `docker import`.
# The result stands in for `debian:bookworm-slim`: build with
# `make images BASE_IMAGE=local/debian:bookworm` (what .ci/docker_stage.sh does).
# Nothing is done when TAG already exists. Needs root (debootstrap) and DOCKER/DOCKER_HOST.
set -euo pipefail

tag=${1:-local/debian:bookworm}
docker=${DOCKER:-/usr/bin/docker}
suite=${DEBIAN_SUITE:-bookworm}

if "$docker" image inspect "$tag" >/dev/null 2>&1; then
  echo "local-base: $tag already exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap not found; apt-get install debootstrap" >&2; exit 2; }

# The mirror this machine already uses (deb822 sources first, then the classic list).
mirror=${DEBIAN_MIRROR:-}
if [[ -z $mirror && -r /etc/apt/sources.list.d/debian.sources ]]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [[ -z $mirror && -r /etc/apt/sources.list ]]; then
  mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/npuzoo-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
echo "local-base: debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" > "$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log" >&2; echo "error: debootstrap failed (log above)" >&2; exit 1; }
rm -f "$rootfs.log"
# apt lists and caches are rebuilt by `apt-get update` in the images; keep the layer small.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | "$docker" import - "$tag" >/dev/null
echo "local-base: $tag ($(du -sh "$rootfs" | cut -f1))"
