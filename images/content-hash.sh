#!/usr/bin/env bash
# Content hash of what goes into an image: 12 hex digits, stable across machines.
#
#   images/content-hash.sh [--ignore FILE] [--text STRING | PATH]...
#   images/content-hash.sh [--ignore FILE] --list FOLDER    the files that go in, NUL-separated
#
# A folder counts as its files' relative names and bytes (sorted; __pycache__, *.pyc and
# *.tmp always left out), a file as its bytes, --text as the string (build arguments, parent
# tags). `--ignore FILE` leaves out, from the folders after it, what FILE's patterns name
# (images/model.Dockerfile.dockerignore): the same files Docker leaves out of that context, so
# a stray file neither goes in nor changes the hash. Of the .dockerignore grammar FILE may use
# `**/GLOB` (GLOB anywhere) and `GLOB` (at the top only), GLOB holding no `/`; anything else
# (`!`, `dir/x`) stops with an error, so the two can never disagree unnoticed.
# The image tags (mk/docker.mk) end in this hash, so an image is rebuilt exactly when one of
# its inputs changed, and a changed model folder rebuilds only that model's image.
# NPUZOO_CONTENT_HASH_LOG=FILE appends one line per call (its arguments) to FILE: how the tests
# count the calls one `make` makes (mk/docker.mk computes each tag once per top-level make).
set -euo pipefail
if [[ -n ${NPUZOO_CONTENT_HASH_LOG:-} ]]; then printf '%s\n' "$*" >> "$NPUZOO_CONTENT_HASH_LOG"; fi

prune=(-name __pycache__ -o -name '*.pyc' -o -name '*.tmp')

load_ignore() {  # load_ignore FILE: add FILE's patterns to the find expression `prune`
  local line glob
  [[ -f $1 ]] || { echo "error: content-hash.sh: --ignore $1: no such file" >&2; exit 2; }
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    line=${line#"${line%%[![:space:]]*}"}
    line=${line%"${line##*[![:space:]]}"}
    [[ -z $line || $line == '#'* ]] && continue
    glob=${line#'**/'}
    if [[ -n $glob && $glob != */* && $glob != '!'* && $glob != '**' ]]; then
      if [[ $line == '**/'* ]]; then
        prune+=(-o -name "$glob")
      else
        prune+=(-o '(' -path "./$glob" ! -path './*/*' ')')
      fi
    else
      echo "error: content-hash.sh: $1: unsupported pattern '$line' (only **/GLOB and GLOB, GLOB without /)" >&2
      exit 2
    fi
  done < "$1"
}

list_files() {  # list_files FOLDER: ./-relative names of the files that go in, sorted, NUL-separated
  (cd "$1" && find . -mindepth 1 '(' '(' "${prune[@]}" ')' -prune ')' -o -type f -print0 | LC_ALL=C sort -z)
}

# Every --ignore file is read once before anything is hashed: a bad one stops with no hash.
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ ${args[i]} == --ignore ]]; then (load_ignore "${args[i + 1]:-}"); fi
done

if [[ ${1:-} == --ignore && ${3:-} == --list ]]; then
  load_ignore "$2"; set -- "${@:3}"
fi
if [[ ${1:-} == --list ]]; then
  [[ -d ${2:-} ]] || { echo "error: content-hash.sh: --list ${2:-}: no such folder" >&2; exit 2; }
  list_files "$2"
  exit 0
fi

{
  while (($#)); do
    case $1 in
      --text) printf 'text %s\n' "$2"; shift 2; continue ;;
      --ignore) load_ignore "$2"; shift 2; continue ;;
    esac
    if [[ -d $1 ]]; then
      printf 'dir %s\n' "$(basename "$1")"
      list_files "$1" | (cd "$1" && xargs -0r sha256sum)
    elif [[ -f $1 ]]; then
      printf 'file %s %s\n' "$(basename "$1")" "$(sha256sum < "$1" | cut -c1-64)"
    else
      printf 'missing %s\n' "$1"
    fi
    shift
  done
} | sha256sum | cut -c1-12
