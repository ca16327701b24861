#!/usr/bin/env bash
# Content hash of what goes into an image: 12 hex digits, stable across machines.
#
#   images/content-hash.sh [--text STRING | PATH]...
#
# A folder counts as its files' relative names and bytes (sorted; __pycache__, *.pyc and
# *.tmp left out), a file as its bytes, --text as the string (build arguments, parent tags).
# The image tags (mk/docker.mk) end in this hash, so an image is rebuilt exactly when one of
# its inputs changed, and a changed model folder rebuilds only that model's image.
set -euo pipefail
{
  while (($#)); do
    if [[ $1 == --text ]]; then
      printf 'text %s\n' "$2"; shift 2; continue
    fi
    if [[ -d $1 ]]; then
      printf 'dir %s\n' "$(basename "$1")"
      (cd "$1" && find . \( -name __pycache__ -prune \) -o -type f ! -name '*.pyc' ! -name '*.tmp' -print0 \
         | LC_ALL=C sort -z | xargs -0r sha256sum)
    elif [[ -f $1 ]]; then
      printf 'file %s %s\n' "$(basename "$1")" "$(sha256sum < "$1" | cut -c1-64)"
    else
      printf 'missing %s\n' "$1"
    fi
    shift
  done
} | sha256sum | cut -c1-12
