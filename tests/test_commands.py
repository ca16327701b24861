"""The atc and ais_bench command lines are defined once (npuzoo/commands.py): what `make -n`
runs is what each model README shows, the placeholders aside."""

import dataclasses
import os
import re
import shlex
import subprocess

import pytest

from npuzoo import commands, config, readme

from helpers import STANDINS, SYSTEM_PATH, VENV_BIN, scratch_repository

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


EXTRAS = ["--precision_mode=allow_fp32_to_fp16", "--optypelist_for_implmode=Gelu;Sigmoid",
          "--debug_dir=a b/$HOME"]  # `;`, a space and a `$` reach atc as they are written


def test_atc_extra_args_follow_the_guides_flags_quoted():
    cfg = dataclasses.replace(config.load("mobilenetv1"), atc_extra_args=tuple(EXTRAS))
    args = commands.atc_args(cfg, "m.onnx", "out", "4", "Ascend310P3", aipp="a.cfg")
    assert args[-5:-3] == commands.aipp_args("a.cfg")
    assert [subprocess.run(["bash", "-c", 'printf "%s\\n" ' + a], capture_output=True,
                           text=True, check=True).stdout for a in args[-3:]] == \
        [e + "\n" for e in EXTRAS]
    atc = commands.make_functions(cfg)["ATC_ARGS"]
    assert atc.endswith(" '--optypelist_for_implmode=Gelu;Sigmoid' '--debug_dir=a b/$$HOME'")


def test_make_n_passes_model_yaml_atc_extra_args_to_atc(tmp_path, shared_data):
    """A model.yaml with atc.extra_args (issue 18: it raised NameError): `make -n` shows them
    after the guide's flags, each one shell word with its text unchanged."""
    root = scratch_repository(tmp_path / "repo")
    yaml_path = root / "models" / "mobilenetv1" / "model.yaml"
    text = yaml_path.read_text()
    assert "atc: {extra_args: []}" in text
    listed = ", ".join("'" + e + "'" for e in EXTRAS)
    yaml_path.write_text(text.replace("atc: {extra_args: []}", f"atc: {{extra_args: [{listed}]}}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NPUZOO_", "MAKE"))}
    env.update(PATH=os.pathsep.join([STANDINS, VENV_BIN, SYSTEM_PATH]), MAKEFLAGS="")
    proc = subprocess.run(["make", "-n", "--no-print-directory", "mobilenetv1", "SOC=Ascend310P3",
                           "BS=4", "WEIGHTS=random", f"DATA={shared_data / 'imagenet-val-10'}"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.replace("\\\n", " ").splitlines()
    line = next(line for line in lines if " atc --framework=5" in line)
    words = shlex.split(line.split(" atc ", 1)[1])
    assert words[:7] == commands.atc_args(config.load("mobilenetv1"), words[1][8:], words[2][9:],
                                          "4", "Ascend310P3")[:4] + [
        "--input_shape=image:4,3,224,224", "--log=error", "--soc_version=Ascend310P3"]
    assert words[7:] == EXTRAS
