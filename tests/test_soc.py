"""Chip names and `npu-smi info` tables of every Ascend generation (npuzoo/soc.py, issue 12).

The tables are tests/fixtures/npu-smi/ (written from the public formats, see its README): each
must resolve to the right `--soc_version` for a DEVICE, through the stand-in npu-smi that prints
the fixture as the real tool prints its table.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from npuzoo import ascend, soc
from npuzoo.errors import UserError

from helpers import REPO, STANDINS, VENV_BIN

FIXTURES = REPO / "tests" / "fixtures" / "npu-smi"


def table(name):
    return (FIXTURES / name).read_text()


def env_with(tmp_path, fixture=None, board=None, fail=None, standins=True):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NPUZOO_STANDIN", "ASCEND_"))}
    env["PATH"] = os.pathsep.join(([STANDINS] if standins else [])
                                  + [VENV_BIN, "/usr/bin:/bin"])
    env["PYTHONPATH"] = str(REPO)
    env["NPUZOO_STANDIN_LOG"] = str(tmp_path / "standin.log")
    if fixture:
        env["NPUZOO_STANDIN_NPU_SMI_TABLE"] = str(FIXTURES / fixture)
    if board:
        env["NPUZOO_STANDIN_NPU_SMI_BOARD"] = str(FIXTURES / board)
    if fail:
        env["NPUZOO_STANDIN_NPU_SMI_FAIL"] = fail
    return env


def npu_smi_calls(tmp_path):
    import json

    log = tmp_path / "standin.log"
    if not log.exists():
        return []
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()
            if json.loads(line)["tool"] == "npu-smi"]


# -- names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "Ascend310", "Ascend310P1", "Ascend310P3", "Ascend310P5", "Ascend310P7", "Ascend310B1",
    "Ascend310B4", "Ascend910", "Ascend910A", "Ascend910B", "Ascend910ProA", "Ascend910ProB",
    "Ascend910PremiumA", "Ascend910B1", "Ascend910B2", "Ascend910B3", "Ascend910B4",
    "Ascend910B4-1", "Ascend910B2C", "Ascend910_9391", "Ascend910_9392", "Ascend910_9362"])
def test_documented_names_are_accepted(name):
    assert soc.resolve(name) == name


@pytest.mark.parametrize("name", [
    "Ascend999", "Ascend", "ascend310P3", "Ascend310P", "Ascend310P33", "Ascend910B4-",
    "Ascend910_1",
    "Ascend910B4-12", "Ascend310P3 ", "AscendAscend910", "Ascend910C", "310P3", "gpu"])
def test_other_names_are_refused_in_one_line(name):
    with pytest.raises(UserError) as err:
        soc.resolve(name)
    text = str(err.value)
    assert text.startswith(f"SOC={name}: unknown chip") and "\n" not in text
    assert "Ascend910B4-1" in text and "Ascend910_9392" in text


def test_an_explicit_soc_never_runs_npu_smi(tmp_path, monkeypatch):
    env = env_with(tmp_path, fail="npu-smi: permission denied (run as root)")
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("NPUZOO_STANDIN_LOG", env["NPUZOO_STANDIN_LOG"])
    monkeypatch.setenv("NPUZOO_STANDIN_NPU_SMI_FAIL", env["NPUZOO_STANDIN_NPU_SMI_FAIL"])
    assert soc.resolve("Ascend910B4-1") == "Ascend910B4-1"
    assert npu_smi_calls(tmp_path) == []
    with pytest.raises(UserError, match=r"permission denied.*pass SOC=<chip> explicitly"):
        soc.resolve("auto")
    assert npu_smi_calls(tmp_path) == [["info"]]


# -- tables -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture, chips, devices", [
    ("310.txt", [(1, "Ascend310")] * 4, {0: "Ascend310", 1: "Ascend310", 2: "Ascend310",
                                         3: "Ascend310"}),
    ("310P3.txt", [(0, "Ascend310P3"), (1, "Ascend310P3")], {0: "Ascend310P3", 1: "Ascend310P3"}),
    ("310B4.txt", [(0, "Ascend310B4")], {0: "Ascend310B4"}),
    ("910B3.txt", [(n, "Ascend910B3") for n in range(4)], {n: "Ascend910B3" for n in range(4)}),
    ("910B4-1.txt", [(0, "Ascend910B4-1"), (1, "Ascend910B4-1")],
     {0: "Ascend910B4-1", 1: "Ascend910B4-1"}),
    ("910B3-no-npu0.txt", [(4, "Ascend910B3"), (5, "Ascend910B3")],
     {0: "Ascend910B3", 1: "Ascend910B3"}),
    ("a3.txt", [(0, "Ascend910"), (0, "Ascend910"), (1, "Ascend910"), (1, "Ascend910")],
     {0: "Ascend910", 1: "Ascend910", 2: "Ascend910", 3: "Ascend910"}),
])
def test_every_table_parses(fixture, chips, devices):
    rows = soc.parse_table(table(fixture))
    assert [(r["npu"], soc.soc_version(r["name"])) for r in rows] == chips
    assert {r["device"]: soc.soc_version(r["name"]) for r in rows} == devices


def test_table_rows_keep_npu_chip_and_device():
    rows = soc.parse_table(table("a3.txt"))
    assert [(r["npu"], r["chip"], r["device"], r["column"]) for r in rows] == [
        (0, 0, 0, "Phy-ID"), (0, 1, 1, "Phy-ID"), (1, 0, 2, "Phy-ID"), (1, 1, 3, "Phy-ID")]
    rows = soc.parse_table(table("310.txt"))
    assert [(r["npu"], r["chip"], r["device"]) for r in rows] == [(1, c, c) for c in range(4)]
    rows = soc.parse_table(table("910B3-no-npu0.txt"))
    assert [(r["npu"], r["chip"], r["device"], r["column"]) for r in rows] == [
        (4, 0, 0, None), (5, 0, 1, None)]


def test_board_lines_give_the_a3_soc_version():
    assert soc.parse_board(table("a3-board.txt")) == "Ascend910_9392"
    assert soc.parse_board("Chip Type : Ascend\nChip Name : 910B4\n") == "Ascend910B4"
    assert soc.parse_board("NPU ID : 0\n") is None


@pytest.mark.parametrize("fixture, device, expected", [
    ("310.txt", 3, "Ascend310"),
    ("310P3.txt", 1, "Ascend310P3"),
    ("310B4.txt", 0, "Ascend310B4"),
    ("910B3.txt", 2, "Ascend910B3"),
    ("910B4-1.txt", 1, "Ascend910B4-1"),
    ("910B3-no-npu0.txt", 0, "Ascend910B3"),
    ("910B3-no-npu0.txt", 1, "Ascend910B3"),
    ("a3.txt", 3, "Ascend910_9392"),
])
def test_soc_auto_resolves_each_table(tmp_path, fixture, device, expected):
    env = env_with(tmp_path, fixture, board="a3-board.txt")
    proc = subprocess.run([sys.executable, "-m", "npuzoo.soc", "resolve", "auto", "--device",
                           str(device)], env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected
    calls = npu_smi_calls(tmp_path)
    assert calls[0] == ["info"]
    if fixture == "a3.txt":  # NPU 1, chip 1 is the fourth chip listed
        assert calls[1:] == [["info", "-t", "board", "-i", "1", "-c", "1"]]
    else:
        assert calls[1:] == []


@pytest.mark.parametrize("fixture, device, fragment", [
    ("910B3-no-npu0.txt", 2, "DEVICE=2: npu-smi info lists devices 0, 1 (its chips in order"),
    ("310P3.txt", 5, "DEVICE=5: npu-smi info lists devices 0, 1 (the Device column)"),
])
def test_soc_auto_device_not_listed(tmp_path, fixture, device, fragment):
    proc = subprocess.run([sys.executable, "-m", "npuzoo.soc", "resolve", "auto", "--device",
                           str(device)], env=env_with(tmp_path, fixture), capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr


def test_soc_auto_a3_without_board_answer(tmp_path):
    env = env_with(tmp_path, "a3.txt")
    env["NPUZOO_STANDIN_NPU_SMI_BOARD"] = str(tmp_path / "empty")
    (tmp_path / "empty").write_text("NPU ID : 0\n")
    with pytest.raises(UserError, match="shows no Chip Name for DEVICE=0"):
        soc.detect(0, env=env)


def test_npu_smi_in_usr_local_sbin_is_found(tmp_path, monkeypatch):
    fake = tmp_path / "sbin"
    fake.mkdir()
    (fake / "npu-smi").symlink_to(Path(STANDINS, "npu-smi"))
    monkeypatch.setattr(soc, "NPU_SMI_FALLBACK_DIRS", (str(fake),))
    env = env_with(tmp_path, "310B4.txt", standins=False)
    assert soc.find_npu_smi(env) == str(fake / "npu-smi")
    assert soc.detect(0, env=env) == "Ascend310B4"


# -- the DEVICE check before an ais_bench run (explicit SOC: advisory) ---------------------------

def test_device_check_warns_and_goes_on_when_npu_smi_fails(tmp_path, capsys):
    env = env_with(tmp_path, fail="Permission denied: npu-smi needs root")
    ascend.check_device_chip("Ascend310P3", 0, env)
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "not checking that DEVICE=0 is an Ascend310P3" in err
    assert "Permission denied" in err and len(err.strip().splitlines()) == 1


def test_device_check_stops_on_another_chip(tmp_path):
    env = env_with(tmp_path, "910B4-1.txt")
    ascend.check_device_chip("Ascend910B4-1", 1, env)
    with pytest.raises(UserError, match=r"DEVICE=1 is an Ascend910B4-1 .* but SOC=Ascend910B3"):
        ascend.check_device_chip("Ascend910B3", 1, env)


def test_device_check_a3_uses_the_board(tmp_path):
    env = env_with(tmp_path, "a3.txt", board="a3-board.txt")
    ascend.check_device_chip("Ascend910_9392", 3, env)
    with pytest.raises(UserError, match="is an Ascend910_9392"):
        ascend.check_device_chip("Ascend910_9391", 3, env)


def test_device_check_without_npu_smi_is_silent(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(soc, "NPU_SMI_FALLBACK_DIRS", ())
    ascend.check_device_chip("Ascend310P3", 0, env_with(tmp_path, standins=False))
    assert capsys.readouterr().err == ""


def test_mk_docker_refuses_a_soc_with_npuzoo_socs_one_check():
    """One check of a SOC value: mk/docker.mk says what npuzoo.soc.check says."""
    with pytest.raises(UserError) as err:
        soc.check("Ascend999")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "NPUZOO_"))}
    proc = subprocess.run(["make", "-s", "-f", "mk/docker.mk", "SOC=Ascend999",
                           f"PY={sys.executable}", "print-stamps"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and f"*** {err.value}." in proc.stderr
    assert soc.check("auto") == "auto" and soc.check("Ascend910_9392") == "Ascend910_9392"
