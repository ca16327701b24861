"""What reaches Make from outside: `make -q` / `make -t`, the environment, command-line
variables that are not the pipeline's (issue 19, items 4 and 14). Each test is the attack: a
marker must not appear, nothing may be run or published.
"""

import os
import re
import shutil
import sys

import pytest

from npuzoo import run, variables

from helpers import REPO, make, scratch_repository


def plain_env(**extra):
    """This environment without a caller's Make state (as a user's shell would have it)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
           and not k.startswith("NPUZOO_")}
    env.update(extra)
    return env


def data_args(shared_data):
    return [f"DATA={shared_data / 'imagenet-val-10'}", "N=2", "WEIGHTS=random"]


# -- make -q and make -t (item 14) -------------------------------------------------------------

@pytest.mark.parametrize("makeflags, mode", [
    ("n", "n"), ("q", "q"), ("qs", "q"), ("sq -- N=9", "q"), ("t", "t"), ("st -j2", "t"),
    ("s -- N=qt", ""), (" -- BS=nqt", ""), ("-j2 --jobserver-auth=3,4", ""), ("", ""),
])
def test_make_mode_reads_only_the_flag_letters(makeflags, mode):
    assert run.make_mode({"MAKEFLAGS": makeflags}) == mode


@pytest.mark.parametrize("target", ["mobilenetv1", "sweep"])
def test_make_q_and_t_run_nothing_and_publish_nothing(scratch, shared_data, target):
    models = ["MODELS=mobilenetv1"] if target == "sweep" else []
    asked = make(scratch, "-q", target, *models, *data_args(shared_data), env=plain_env())
    assert asked.returncode == 1, asked.stdout + asked.stderr  # "not up to date"
    assert asked.stdout == "" and "error" not in asked.stderr
    touched = make(scratch, "-t", target, *models, *data_args(shared_data), env=plain_env())
    assert touched.returncode == 2
    assert touched.stderr.startswith(f"error: make -t {target}: a pipeline is never marked "
                                     "up to date without running it")
    assert touched.stderr.count("error:") == 1
    assert not (scratch / "build").exists() and not (scratch / "reports" / "mobilenetv1").exists()


# -- the environment and the command line (item 4) ----------------------------------------------

MAKEFILES = ["Makefile", "mk/outside.mk", "mk/venv.mk", "mk/pipeline.mk", "mk/docker.mk"]
# Read by Make or the shell as they are meant to be (or by npuzoo.run, which checks them).
NOT_HOSTILE = {"PATH", "HOME", "SHELL", "LC_ALL", "MFLAGS", "GNUMAKEFLAGS",
               *(name for name in run.DEFAULTS), "MODELS", "SHARDS", "TORCH_INDEX"}


def every_name():
    """Every upper-case word of the makefiles: each variable they use, and more."""
    text = "".join((REPO / name).read_text() for name in MAKEFILES)
    return sorted({name for name in re.findall(r"\b[A-Z][A-Z0-9_]*[A-Z0-9]\b", text)
                   if name not in NOT_HOSTILE and not name.startswith("MAKE")})


def hostile(markers, name):
    return f"$(shell touch {markers}/make-{name}) ;touch {markers}/shell-{name} #INJECTED-{name}"


def test_no_environment_variable_is_expanded_by_make_or_the_shell(scratch, shared_data,
                                                                   tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    names = every_name()
    assert {"ENVIRONMENT_JSON", "BENCH_FLAGS", "SOURCE_JSON", "PYTHON", "PERF_FLAGS",
            "ATC", "AIS_BENCH"} <= set(names)
    env = plain_env(**{name: hostile(markers, name) for name in names})
    for args in (["mobilenetv1", *data_args(shared_data)],
                 ["-W", "requirements.txt", "venv"], ["test"], ["readme"]):
        proc = make(scratch, "-n", *args, env=env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "INJECTED" not in proc.stdout + proc.stderr, args
    assert os.listdir(markers) == []


@pytest.mark.parametrize("name", ["PYTHON", "PY", "VENV", "SHELL", "MODEL_NAMES", "PYTEST_ARGS",
                                  "CI", "USER_VARIABLES", "SOURCE_VERIFY"])
def test_no_command_line_variable_is_expanded_by_make_or_the_shell(scratch, shared_data,
                                                                   tmp_path, name):
    markers = tmp_path / "markers"
    markers.mkdir()
    value = hostile(markers, name)
    for args in (["mobilenetv1", *data_args(shared_data)],
                 ["-W", "requirements.txt", "venv"], ["test"], ["readme"]):
        proc = make(scratch, "-n", *args, f"{name}={value}", env=plain_env())
        assert "INJECTED" not in proc.stdout, args
    assert os.listdir(markers) == []


def test_a_hostile_python_is_refused_in_one_line(tmp_path):
    """`make venv PYTHON=...` really run (in a copy without .venv: nothing is installed)."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ["Makefile", "requirements.txt", "mk", "models"]:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, root / name)
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = make(root, "venv", f"PYTHON=python3; touch {markers}/m", env=plain_env())
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (f"error: PYTHON=python3; touch {markers}/m: expected "
                                           "a python command or path (letters, digits and "
                                           "_./+-)")
    assert os.listdir(markers) == [] and not (root / ".venv" / "bin").exists()


def test_an_unknown_target_is_named_not_run(scratch, tmp_path):
    marker = tmp_path / "marker"
    for goal in (f'x"$(touch {marker})"', f"y'$(touch {marker})'", f"z`touch {marker}`"):
        proc = make(scratch, goal, env=plain_env())
        assert proc.returncode == 2
        assert proc.stderr.startswith(f"error: no model or target named '{goal}'; models: ")
    assert not marker.exists()


def test_make_test_runs_the_static_checks_before_the_tests(scratch):
    """make test has no way around lint: ruff, then mypy, then pytest (CI runs make test)."""
    proc = make(scratch, "-n", "-o", ".venv/.installed", "test", "PYTEST_ARGS=-x", env=plain_env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    tools = [line.split(" -m ")[1].split()[0] for line in lines if " -m " in line]
    assert tools == ["ruff", "mypy", "pytest"], proc.stdout


# -- the variables' one table (issue 20 item 2) ------------------------------------------------

def test_the_makefile_lists_are_the_tables():
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    for list_name, kind in (("USER_VARIABLES", "value"), ("DOCKER_VARIABLES", "docker")):
        listed = re.search(rf"^override {list_name} := (.*)$", text, re.M).group(1).split()
        assert listed == variables.names(kind), list_name


def test_make_help_is_the_table_even_without_a_venv(tmp_path):
    root = scratch_repository(tmp_path / "repo")
    os.unlink(root / ".venv")
    proc = make(root, "help", env=plain_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(variables.help_text() + "\nModels: ")


# -- make -n on a fresh clone (issue 20 item 7) ------------------------------------------------

def test_make_n_on_a_fresh_clone_shows_the_venv_then_the_pipeline(tmp_path, shared_data):
    root = scratch_repository(tmp_path / "repo")
    os.unlink(root / ".venv")
    bare = tmp_path / "python"  # a python without the packages: it cannot run the driver
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    for python, data, shown in ((bare, [], "the pipeline is shown once it exists"),
                                (sys.executable, data_args(shared_data), "npuzoo.bench")):
        proc = make(root, "-n", "mobilenetv1", f"PYTHON={python}", *data, env=plain_env())
        lines = (proc.stdout + proc.stderr).splitlines()
        assert proc.returncode == 0, lines[-20:]
        assert not [line for line in lines if re.search(r"Error|No such file|error:", line)]
        assert any("-m venv .venv" in line for line in lines)  # what `make venv` would do
        assert shown in proc.stdout
        assert not (root / ".venv").exists() and not (root / ".venv.lock").exists()
