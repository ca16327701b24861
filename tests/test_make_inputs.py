"""What reaches Make from outside: `make -q` / `make -t`, the environment, command-line
variables that are not the pipeline's (issue 19, items 4 and 14). Each test is the attack: a
marker must not appear, nothing may be run or published.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

from npuzoo import run
from tests.conftest import scratch_repository

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return scratch_repository(tmp_path_factory.mktemp("make-inputs") / "repo")


def plain_env(**extra):
    """This environment without a caller's Make state (as a user's shell would have it)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
           and not k.startswith("NPUZOO_")}
    env.update(extra)
    return env


def make(root, *args, env=None, timeout=300):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=root,
                          env=env or plain_env(), capture_output=True, text=True,
                          timeout=timeout)


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
    asked = make(scratch, "-q", target, *models, *data_args(shared_data))
    assert asked.returncode == 1, asked.stdout + asked.stderr  # "not up to date"
    assert asked.stdout == "" and "error" not in asked.stderr
    touched = make(scratch, "-t", target, *models, *data_args(shared_data))
    assert touched.returncode == 2
    assert touched.stderr.startswith(f"error: make -t {target}: a pipeline is never marked "
                                     "up to date without running it")
    assert touched.stderr.count("error:") == 1
    assert not (scratch / "build").exists() and not (scratch / "reports" / "mobilenetv1").exists()
