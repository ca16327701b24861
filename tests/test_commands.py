"""The atc and ais_bench command lines are defined once (npuzoo/commands.py): what `make -n`
runs is what each model README shows, the placeholders aside."""

import os
import re
import subprocess

import pytest

from npuzoo import commands, config, readme
from tests.conftest import scratch_repository
from tests.test_ascend import STANDINS, SYSTEM_PATH, VENV_BIN

MODELS = config.model_names()


def shape(words):
    """A command's flags with their values replaced by their kind, to compare the structure."""
    return [re.sub(r"=.*", "=", w) if w.startswith("--") else "<value>" for w in words]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, shared_data):
    root = scratch_repository(tmp_path_factory.mktemp("commands"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NPUZOO_", "MAKE"))}
    env.update(PATH=os.pathsep.join([STANDINS, VENV_BIN, SYSTEM_PATH]), MAKEFLAGS="")

    def run(model):
        proc = subprocess.run(["make", "-n", "--no-print-directory", model, "SOC=Ascend310P3",
                               "BS=4", "WEIGHTS=random",
                               f"DATA={shared_data / 'imagenet-val-10'}"],
                              cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout
    return run


@pytest.mark.parametrize("model", MODELS)
def test_make_runs_what_the_readme_shows(model, dry_run):
    cfg = config.load(model)
    out = dry_run(model)
    quick = readme.quick_start(cfg, model, [])
    atc_line = next(line for line in out.splitlines() if "atc --framework=5" in line)
    made = atc_line.split("atc ", 1)[1].split()
    shown = quick["atc"].split()[1:]
    assert made == commands.atc_args(cfg, made[1].split("=", 1)[1], made[2].split("=", 1)[1],
                                     "4", "Ascend310P3")
    assert shape(made) == shape(shown)
    bench = [line.split(" -m ais_bench ", 1)[1].split() for line in out.splitlines()
             if " -m ais_bench " in line]
    infer, perf = bench
    assert shape(infer) == shape(quick["infer"].split()[3:]) + ["--device", "<value>"]
    assert shape(perf) == shape(quick["perf"].split()[3:]) + ["--device", "<value>"]


def test_model_mk_gets_the_functions_and_they_expand_to_the_same_words():
    cfg = config.load("mobilenetv1")
    functions = commands.make_functions(cfg)
    makevars = config.make_variables(cfg)
    for name, text in functions.items():
        assert f"{name} = {text}\n" in makevars
    text = functions["ATC_ARGS"]
    for n, value in enumerate(["m.onnx", "out", "4", "Ascend310P3"], 1):
        text = text.replace(f"$({n})", value)
    without_aipp = text.replace("$(if $(5), --insert_op_conf=$(5) --enable_small_channel=1)", "")
    assert without_aipp.split() == commands.atc_args(cfg, "m.onnx", "out", "4", "Ascend310P3")
