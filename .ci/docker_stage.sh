#!/usr/bin/env bash
# CI, docker stage (after `make test`): the RUNNER=docker path end to end on this machine.
#
#  1. install the engine (docker.io) and debootstrap; start dockerd with its own data root
#     under /tmp (no bridge, no iptables: docs/design.md, "CI on machines without a container
#     registry")
#  2. make the local Debian base image (no registry here) and build every image but Ascend's;
#     the Ascend Dockerfile is linted and parsed only (hadolint + tests/test_images.py)
#  3. run MobileNetV1 on a subset with RUNNER=local, then the same with RUNNER=docker (every
#     container hardened: no capabilities, read-only root, process limit; its DATA a copy of
#     the set in a folder whose path holds `,` `:` `"` and a space), and check that the
#     accuracy JSON is byte-identical and the report's numbers equal
#  4. check that a second `make images` builds nothing, and that the model folder copied
#     into an empty directory builds its image from images/model.Dockerfile alone
# The engine it started is stopped, its mounts undone and its data root removed on any exit.
# RUNNER=local and RUNNER=docker write the same build/ paths (the command lines are the same
# by design), so the local run's accuracy.json and report are copied aside and
# build/mobilenetv1 removed before the docker run; reports/mobilenetv1/ is put back as it was.
#
# Skipped, with a message, when ../shared/data is absent (nothing to run the models on), the
# disk has under STAGE_DISK_GB free (default 14; the stage peaked at 11 GB) or DOCKER_STAGE=skip.
# Variables: STAGE_DATA, STAGE_N, STAGE_BS, STAGE_LOOP (the perf loops of both runs: their
# timings are not compared, so a short one keeps the stage quick).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

data=${STAGE_DATA:-../shared/data/imagenet-val-1300}
n=${STAGE_N:-200}
bs=${STAGE_BS:-16}
loop=${STAGE_LOOP:-20}
model=mobilenetv1
base_image=local/debian:bookworm
export DOCKER=/usr/bin/docker  # the Debian client: the other docker on PATH has no BuildKit

if [[ ${DOCKER_STAGE:-} == skip ]]; then
  echo "docker stage: skipped (DOCKER_STAGE=skip)"; exit 0
fi
if [[ ! -f $data/val_label.txt ]]; then
  echo "docker stage: skipped: no dataset at $data (../shared/data is absent on this machine)"; exit 0
fi

# The images hold torch's CUDA build (about 6 GB installed, its wheels linked, not copied,
# into the build context) and BuildKit keeps a copy of that context while it builds: on a
# machine with less free disk than this, the stage could only fail half-way, so it says so.
need_gb=${STAGE_DISK_GB:-14}
free_gb=$(df --output=avail -BG /tmp . | awk 'NR > 1 {gsub("G", ""); if (min == "" || $1 < min) min = $1} END {print min}')
if ((free_gb < need_gb)); then
  echo "docker stage: skipped: ${free_gb} GB free under /tmp or $repo, the images need about ${need_gb} GB (STAGE_DISK_GB)"
  exit 0
fi

timings=()
phase_start=$SECONDS
phase() {  # phase NAME: close the previous phase's clock, print a header
  if [[ -n ${phase_name:-} ]]; then timings+=("$(printf '%-34s %5d s' "$phase_name" $((SECONDS - phase_start)))"); fi
  phase_name=$1; phase_start=$SECONDS
  [[ -n $1 ]] && echo "== docker stage: $1"
  return 0
}

engine_dir=""
reports_saved=""
cleanup() {
  local rc=$?
  set +e
  phase ""
  if [[ -n $engine_dir ]]; then
    local pid
    pid=$(cat "$engine_dir/dockerd.pid" 2>/dev/null)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && { echo "docker stage: dockerd $pid did not stop; killing it"; kill -9 "$pid"; }
    fi
    # What the engine left mounted under its folders (exec-root netns, overlay layers).
    awk -v d="$engine_dir" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m"
    done
    rm -rf "$engine_dir"
    echo "docker stage: engine stopped, $engine_dir unmounted and removed"
  fi
  if [[ -n $reports_saved ]]; then
    rm -rf "reports/$model"
    [[ -d $reports_saved/$model ]] && cp -a "$reports_saved/$model" "reports/$model"
    rm -rf "$reports_saved"
  fi
  echo "docker stage: timings"
  for line in "${timings[@]}"; do echo "  $line"; done
  echo "  total                              $(printf '%5d s' "$SECONDS")"
  ((rc == 0)) && echo "docker stage: OK" || echo "docker stage: FAILED (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT

# -- 1. engine -----------------------------------------------------------------------------
phase "install docker.io and debootstrap"
if [[ ! -x /usr/bin/docker || ! -x /usr/sbin/dockerd ]] || ! command -v debootstrap > /dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap > /dev/null
fi

phase "start dockerd"
engine_dir=$(mktemp -d /tmp/zoo-docker.XXXXXX)
dockerd --storage-driver=overlay2 --iptables=false --bridge=none \
  --data-root "$engine_dir/root" --exec-root "$engine_dir/exec" \
  -H "unix://$engine_dir/docker.sock" --pidfile "$engine_dir/dockerd.pid" > "$engine_dir/dockerd.log" 2>&1 &
export DOCKER_HOST=unix://$engine_dir/docker.sock DOCKER_BUILDKIT=1
for _ in $(seq 60); do "$DOCKER" version > /dev/null 2>&1 && break; sleep 0.5; done
"$DOCKER" version --format 'docker stage: engine {{.Server.Version}} at '"$DOCKER_HOST" \
  || { tail -20 "$engine_dir/dockerd.log"; echo "error: dockerd did not start" >&2; exit 1; }

# -- 2. images -----------------------------------------------------------------------------
phase "local base image (debootstrap)"
images/local-base.sh "$base_image"

phase "make images (all but Ascend)"
make --no-print-directory images BASE_IMAGE=$base_image
"$DOCKER" builder prune --force > /dev/null  # the contexts' copies (GBs); the images stay

phase "tests/test_images.py with the engine (Ascend: hadolint + structure only)"
# With an engine answering, the engine tests run too: what Docker leaves out of a model
# folder's context, and a hardened container with a hostile DATA mount.
.venv/bin/python -m pytest -q -p no:cacheprovider tests/test_images.py

# -- 3. local and docker runs, compared ---------------------------------------------------------
run_args=(N=$n BS=$bs WEIGHTS=random LOOP=$loop WARMUP=2)
reports_saved=$(mktemp -d)
[[ -d reports/$model ]] && cp -a "reports/$model" "$reports_saved/$model"
accuracy_of() { find "build/$model/cpu/random/bs$bs" -path "*-n$n/accuracy.json" | head -n 1; }

phase "make $model RUNNER=local"
rm -rf "build/$model"
make --no-print-directory "$model" RUNNER=local "${run_args[@]}" DATA="$data"
local_out=$(mktemp -d)
cp "$(accuracy_of)" "$local_out/accuracy.json"
cp "reports/$model/cpu_bs$bs.json" "$local_out/report.json"
rm -rf "build/$model"

phase "make $model RUNNER=docker"
# The same images under a path that `-v` or an unquoted --mount would split or misread.
hostile=$(mktemp -d)/'da,ta:"x" y'
mkdir -p "$hostile"
cp -al "$data" "$hostile/" 2>/dev/null || cp -r "$data" "$hostile/"
# BASE_IMAGE through the environment: npuzoo/run.py builds the images with a make of its own,
# which gets no command-line variables of this one (it scrubs MAKEFLAGS).
BASE_IMAGE=$base_image make --no-print-directory "$model" RUNNER=docker "${run_args[@]}" \
  DATA="$hostile/$(basename "$data")"
rm -rf "$(dirname "$hostile")"
docker_accuracy=$(accuracy_of)

phase "compare local and docker"
cmp "$local_out/accuracy.json" "$docker_accuracy" \
  || { echo "error: $docker_accuracy differs from RUNNER=local's accuracy.json" >&2; exit 1; }
.venv/bin/python - "$local_out/report.json" "reports/$model/cpu_bs$bs.json" <<'EOF'
import json, sys
local, docker = (json.load(open(p)) for p in sys.argv[1:3])
same = ("model", "soc", "batch_size", "backend", "weights", "dataset", "accuracy", "gate")
diff = [k for k in same if local.get(k) != docker.get(k)]
# Same pinned packages in the images as in the .venv (Python itself may differ: Debian's).
for package in ("torch", "torchvision", "onnx", "onnxruntime", "numpy", "pillow"):
    if local["environment"].get(package) != docker["environment"].get(package):
        diff.append(f"environment.{package}")
if diff:
    for k in diff:
        section, _, key = k.partition(".")
        pick = lambda r: r.get(section, {}).get(key) if key else r.get(section)
        print(f"error: report field {k}: local {pick(local)!r} != docker {pick(docker)!r}", file=sys.stderr)
    sys.exit(1)
print("docker stage: accuracy.json identical; report fields equal:", ", ".join(same),
      "and the package versions")
print("  accuracy:", {k: v for k, v in (docker.get("accuracy") or {}).items() if k.startswith("top")})
EOF
rm -rf "$local_out"

# -- 4. no rebuild; a model folder on its own -----------------------------------------------
phase "second make images (expect no build)"
second=$(make --no-print-directory images BASE_IMAGE=$base_image 2>&1) || { echo "$second"; exit 1; }
echo "$second"
if grep -q "images: building" <<< "$second"; then
  echo "error: a second make images built an image again" >&2; exit 1
fi

phase "$model folder alone -> model image"
export_tag=$("$DOCKER" image inspect --format '{{index .RepoTags 0}}' npuzoo/export:latest)
alone=$(mktemp -d)
cp -r "models/$model" "$alone/"
"$DOCKER" build --network=host -q -f images/model.Dockerfile --build-arg BASE_IMAGE=npuzoo/export:latest \
  -t "npuzoo-alone/$model" "$alone/$model" > /dev/null
rm -rf "$alone"
"$DOCKER" run --rm --network=none --cap-drop=ALL --security-opt=no-new-privileges --read-only \
  --tmpfs /tmp:rw,nosuid,nodev,noexec --pids-limit=4096 "npuzoo-alone/$model" \
  python3 "models/$model/pth2onnx.py" random "/tmp/$model.onnx" 2>&1 | tail -n 2
echo "docker stage: $model built from a copy of its folder alone (FROM $export_tag) and exported"
