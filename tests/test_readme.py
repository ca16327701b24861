"""The generated READMEs: committed files equal their rendering, and the rendering follows reports/.

Most tests render into memory from a temporary models/ and reports/ folder built here, so they
depend neither on the committed reports nor on which models other people are adding.
"""

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from npuzoo import config, readme
from npuzoo.readme import BEST

from helpers import make_report

SECTIONS = ["## Overview", "## Inputs and outputs", "## Environment", "## Quick start",
            "## Performance and accuracy", "### Measured here",
            "### Reference: published by the Ascend ModelZoo (not measured here)"]


# -- helpers -------------------------------------------------------------------------------

def write_report(reports_dir, data):
    path = reports_dir / data["model"] / f"{data['soc']}_bs{data['batch_size']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def copy_model(models_dir, name="mobilenetv1", as_name=None, edit=None):
    """models_dir/<as_name>/ with the repository model's model.yaml (renamed, edited)."""
    src = os.path.join(config.MODELS_DIR, name)
    dst = models_dir / (as_name or name)
    dst.mkdir(parents=True)
    data = yaml.safe_load(Path(src, "model.yaml").read_text(encoding="utf-8"))
    data["name"] = as_name or name
    if edit:
        edit(data)
    (dst / "model.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (dst / "requirements.txt").write_text("torch==2.14.1\nonnx==1.23.2\n")
    return dst


@pytest.fixture
def zoo(tmp_path):
    """A temporary models/ (mobilenetv1 and a second model) and an empty reports/."""
    models, reports_dir = tmp_path / "models", tmp_path / "reports"
    copy_model(models)
    copy_model(models, as_name="othernet")
    reports_dir.mkdir()
    return models, reports_dir, tmp_path


def render(models, reports_dir, root):
    return readme.render_all(str(models), str(reports_dir), str(root))


def changed_lines(before, after):
    """{path: ([removed lines], [added lines])} between two renderings."""
    out = {}
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path, "").splitlines(), after.get(path, "").splitlines()
        diff = list(difflib.unified_diff(old, new, lineterm="", n=0))
        removed = [ln[1:] for ln in diff if ln.startswith("-") and not ln.startswith("---")]
        added = [ln[1:] for ln in diff if ln.startswith("+") and not ln.startswith("+++")]
        if removed or added:
            out[os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path)] = \
                (removed, added)
    return out


def table_row(text, *cells):
    """The Markdown table rows of `text` whose leading cells are `cells`."""
    prefix = "| " + " | ".join(cells) + " |"
    return [line for line in text.splitlines() if line.startswith(prefix)]


# -- the committed READMEs -----------------------------------------------------------------

def test_committed_readmes_equal_their_rendering():
    """`make readme` on a fresh clone changes nothing (the PNGs are checked by their links)."""
    rendered = readme.render_all()
    differ = readme.stale(rendered)
    details = []
    for path in differ:
        old = Path(path).read_text(encoding="utf-8").splitlines() if os.path.isfile(path) else []
        diff = difflib.unified_diff(old, rendered[path].splitlines(), path, "rendering",
                                    lineterm="", n=0)
        details.append("\n".join(list(diff)[:20]))
    assert not differ, ("README(s) differ from their rendering; run `make readme` and commit:\n"
                        + "\n".join(details))


@pytest.mark.parametrize("name", config.model_names())
def test_every_rendered_reference_figure_is_model_yamls_with_its_source(name):
    """The published figures a committed README shows are model.yaml's, figure for figure,
    each table row naming its source (model.yaml's own values were checked once against the
    guides: docs/model_facts.md, "Reference figures and their sources")."""
    cfg = config.load(name)
    perf = cfg.reference.perf
    text = Path(config.MODELS_DIR, name, "README.md").read_text(encoding="utf-8")
    lines = text[text.index("### Reference"):].splitlines()
    header = next(ln for ln in lines if ln.startswith("| chip | BS "))
    sizes = [int(c.split()[1]) for c in cells(header)[1:-1]]
    shown = {}
    for line in lines[lines.index(header) + 2:]:
        if not line.startswith("|"):
            break
        chip, *figures, source = [c.strip() for c in cells(line)]
        shown[chip] = {bs: float(c.replace("**", "").replace(BEST, "").strip())
                       for bs, c in zip(sizes, figures, strict=False) if c != "—"}
        assert source.startswith(perf[chip].source), (chip, source)
    assert shown == {chip: {bs: float(v) for bs, v in table.published.items()}
                     for chip, table in perf.items()}
    top = Path(config.REPO_ROOT, "README.md").read_text(encoding="utf-8")
    [row] = [ln for ln in top.splitlines() if ln.startswith(f"| [{name}](") and " at BS " in ln]
    for chip, figures in shown.items():
        best = max(figures, key=lambda bs: (figures[bs], -bs))
        assert re.search(rf"{chip} {re.escape(readme.fmt_ref(perf[chip].published[best]))} at BS "
                         rf"{best}\b", row), (chip, row)


def test_a_reference_table_without_its_source_is_refused(tmp_path):
    def unsourced(data):
        del data["reference"]["perf"]["T4"]["source"]
    folder = copy_model(tmp_path / "models", edit=unsourced)
    with pytest.raises(config.UserError, match=r"reference\.perf\.T4\.source: missing"):
        config.load(str(folder / "model.yaml"))


def test_committed_readmes_link_existing_plots():
    for name in config.model_names():
        path = os.path.join(config.MODELS_DIR, name, "README.md")
        if not os.path.isfile(path):
            continue  # reported by the test above
        text = Path(path).read_text(encoding="utf-8")
        for png in re.findall(r"\]\((perf_[^)]+\.png)\)", text):
            assert os.path.isfile(os.path.join(config.MODELS_DIR, name, png)), (name, png)


def test_every_model_readme_has_the_guide_sections_and_commands():
    for name in config.model_names():
        cfg = config.load(name)
        text = readme.render_model(name)
        positions = [text.find(section) for section in SECTIONS]
        assert -1 not in positions and positions == sorted(positions), name
        c, h, w = cfg.input.shape
        assert "pip install -r requirements.txt" in text
        assert "python3 preprocess.py ${imagenet}/val prep_dataset" in text
        assert f"python3 pth2onnx.py {cfg.weights.file} {name}.onnx" in text
        assert (f'--input_shape="{cfg.input.name}:${{bs}},{c},{h},{w}"' in text
                and "--soc_version=Ascend${chip_name}" in text and "atc --framework=5" in text)
        assert f"python3 -m ais_bench --model {name}_bs${{bs}}.om --input prep_dataset" in text
        assert ("python3 postprocess.py result/bs${bs} ${imagenet}/val_label.txt ./ "
                "result_bs${bs}.json") in text
        guide = config.perf_defaults(cfg)
        assert f"--loop {guide['loop']} --warmup_count {guide['warmup']}" in text
        assert f"npuzoo-bench --model {name}.onnx --input prep_dataset" in text
        assert f"make {name} DATA=" in text
        if cfg.upstream.sources:
            assert "git clone " in text and "pip download --no-deps --no-binary :all:" in text
            assert "--source upstream" in text
        else:
            assert "git clone" not in text


# -- rendering from reports ----------------------------------------------------------------

def test_no_reports_renders_gracefully(zoo):
    models, reports_dir, root = zoo
    out = render(models, reports_dir, root)
    model = out[str(models / "mobilenetv1" / "README.md")]
    assert "*No measurements yet* — run `make mobilenetv1 DATA=" in model
    assert "![" not in model
    top = out[str(root / "README.md")]
    assert "[othernet](models/othernet/README.md): no measurements yet — run `make othernet" in top
    assert "| model | chip |" not in top  # no empty measured table


def test_a_new_model_folder_is_rendered_with_no_code_change(zoo):
    models, reports_dir, root = zoo
    copy_model(models, as_name="zzznet")
    out = render(models, reports_dir, root)
    assert str(models / "zzznet" / "README.md") in out
    assert "make zzznet DATA=" in out[str(models / "zzznet" / "README.md")]
    assert "[zzznet](models/zzznet/README.md)" in out[str(root / "README.md")]


def test_editing_a_report_changes_exactly_its_rows(zoo):
    models, reports_dir, root = zoo
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 1, 290.0))
    edited = write_report(reports_dir, make_report("mobilenetv1", "cpu", 4, 300.0))
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 16, 350.0))
    write_report(reports_dir, make_report("othernet", "cpu", 4, 30.0))
    before = render(models, reports_dir, root)

    data = json.loads(edited.read_text())
    data["perf"]["throughput"] = 310.5  # still not the best batch size
    edited.write_text(json.dumps(data))
    after = render(models, reports_dir, root)

    changes = changed_lines(before, after)
    assert set(changes) == {"mobilenetv1/README.md", f"{root.name}/README.md"}
    removed, added = changes["mobilenetv1/README.md"]
    assert len(removed) == len(added) == 1
    assert added[0].startswith("| 4 | 310.5 |") and removed[0].startswith("| 4 | 300.0 |")
    removed, added = changes[f"{root.name}/README.md"]
    assert len(added) == 1 and added[0].startswith(
        "| [mobilenetv1](models/mobilenetv1/README.md) | cpu (ONNX Runtime) | 290.0 | 310.5 | "
        "**350.0** ★ |")

    # A new best batch size moves the mark: two rows of the model README, one of the top.
    data["perf"]["throughput"] = 400.0
    edited.write_text(json.dumps(data))
    changes = changed_lines(after, render(models, reports_dir, root))
    removed, added = changes["mobilenetv1/README.md"]
    assert sorted(a.split(" | ")[0] for a in added) == ["| **4** ★", "| 16"]
    assert len(changes[f"{root.name}/README.md"][1]) == 1


def test_rows_say_what_they_measured(zoo):
    models, reports_dir, _root = zoo
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 4, 300.0, images=300,
                                          weights="published", top1=70.0, top5=90.0,
                                          commit="abcdef123456", timestamp="2025-10-01T00:00:00Z"))
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 8, 310.0, images=300))
    text = readme.render_model("mobilenetv1", str(models), str(reports_dir))
    # Other weights, another table: each marks its own best batch size.
    [row] = table_row(text, "**4** ★")
    assert "Images: 300 of 1,300 images of imagenet-val-1300; published weights; engine:" in text
    # random weights: said once, in the table's heading line, not in its cells
    assert "Images: 300 of 1,300 images of imagenet-val-1300; random weights (so top-1 and " \
        "top-5 mean nothing); engine:" in text
    assert text.count("mean nothing") == 1
    assert "| 2025-10-01; `abcdef123456` |" in row
    assert "not applicable: 300 images, not the full 50,000-image validation set" in row
    assert "| 70.00 | 90.00 |" in row
    [row] = table_row(text, "**8** ★")
    assert "| 0.33 | 1.00 |" in row and "not applicable: random weights" in row
    assert "latency p50 (ms) | latency p99 (ms)" in text


def test_reference_rows_are_separate_and_ratios_use_the_same_chip(zoo):
    models, reports_dir, _root = zoo
    write_report(reports_dir, make_report("mobilenetv1", "Ascend310P3", 16, 11000.0,
                                          images=50000, weights="published", top1=69.4,
                                          top5=89.0))
    write_report(reports_dir, make_report("mobilenetv1", "Ascend310P3", 2, 3000.0))
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 16, 330.0))
    text = readme.render_model("mobilenetv1", str(models), str(reports_dir))
    measured = text[text.index("### Measured here"):text.index("### Reference")]
    reference = text[text.index("### Reference"):]
    [row] = table_row(measured, "**16** ★", "11,000.0")
    assert "0.90× of 12259.18" in row and "pass: within tolerance" in row
    assert "Images: full validation set (50,000 images); published weights" in measured
    [row] = table_row(measured, "**2** ★", "3,000.0")
    assert "| — |" in row  # no published number at BS 2: no ratio
    [row] = table_row(measured, "**16** ★", "330.0")
    assert "| — |" in row  # no reference for the CPU
    assert "12259.18" not in measured.replace("0.90× of 12259.18", "")
    assert "| Ascend310P3 | 4241.54 | 8313.37 | 10430.75 | 12259.18 | 13274.92 | **14515.69** ★ |" \
        in reference
    assert "| ModelZoo | 69.52 | 89.05 |" in reference and "11,000.0" not in reference


def test_top_table_marks_contention_names_every_engine_and_says_random_once(zoo):
    """Issue 21 item 6: the top-level table marked no contended figure, dropped the engine's
    name for ONNX Runtime and repeated "random weights" in every accuracy cell."""
    models, reports_dir, root = zoo
    busy = make_report("mobilenetv1", "cpu", 1, 290.0)
    busy["perf"]["load"] = {"contended": True}
    write_report(reports_dir, busy)
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 4, 250.0))
    write_report(reports_dir, make_report("othernet", "cpu", 4, 30.0))
    top = render(models, reports_dir, root)[str(root / "README.md")]
    [row] = [ln for ln in top.splitlines() if ln.startswith("| [mobilenetv1]") and "290.0" in ln]
    assert "| cpu (ONNX Runtime) | **290.0** ★ (contended) | 250.0 |" in row
    table = top[top.index("## Every model on every chip"):top.index("### Reference")]
    assert table.count("random weights: the accuracy means nothing") == 1
    assert "not meaningful" not in table and table.count("0.33 ‡") == 2


def test_failed_gate_is_visible(zoo):
    models, reports_dir, root = zoo
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 1, 100.0, images=50000,
                                          weights="published", top1=60.0, top5=80.0))
    out = render(models, reports_dir, root)
    assert "**FAIL**: top1 60.00 < 68.52" in out[str(models / "mobilenetv1" / "README.md")]
    assert "**FAIL**: top1 60.00 < 68.52" in out[str(root / "README.md")]


def test_top5_only_reference_shows_a_dash_for_top1(tmp_path):
    def top5_only(data):
        data["reference"]["accuracy"].pop("top1")
        data["reference"]["accuracy"]["top5"] = 94.43
    models = tmp_path / "models"
    copy_model(models, as_name="topfive", edit=top5_only)
    out = render(models, tmp_path / "reports", tmp_path)
    text = out[str(models / "topfive" / "README.md")]
    assert "| ModelZoo | — | 94.43 |" in text
    assert 'No top-1 accuracy is published for these weights, hence "—"' in text
    assert "| [topfive](models/topfive/README.md) | — | 94.43 |" in out[str(tmp_path / "README.md")]


def test_top_readme_keeps_the_introduction(zoo):
    models, reports_dir, root = zoo
    top = render(models, reports_dir, root)[str(root / "README.md")]
    for needed in ("make test", "make mobilenetv1 DATA=/path/to/imagenet BS=16",
                   "DATA=../shared/data/imagenet-val-1300 N=300 WEIGHTS=random",
                   "## Layout", "## Bad input", "cannot be decoded stops preprocessing",
                   "| `LOOP` |", "| `WARMUP` |", "| `RUNNER` |", "| `DEVICE` |"):
        assert needed in top, needed
    assert top.index("## Bad input") < top.index("## Every model on every chip measured")


# -- plots ---------------------------------------------------------------------------------

def test_plots_only_for_measured_chips_and_deterministic(zoo):
    models, reports_dir, _root = zoo
    assert readme.plots("mobilenetv1", str(models), str(reports_dir)) == {}
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 1, 290.0))
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 4, 350.0))
    write_report(reports_dir, make_report("mobilenetv1", "Ascend310P3", 1, 4000.0))
    first = readme.plots("mobilenetv1", str(models), str(reports_dir))
    second = readme.plots("mobilenetv1", str(models), str(reports_dir))
    assert sorted(os.path.basename(p) for p in first) == ["perf_Ascend310P3.png", "perf_cpu.png"]
    assert first == second
    for data in first.values():
        assert data.startswith(b"\x89PNG") and b"Software" not in data and b"tIME" not in data
    text = readme.render_model("mobilenetv1", str(models), str(reports_dir))
    assert "![mobilenetv1 throughput vs batch size on cpu](perf_cpu.png)" in text
    assert "(perf_Ascend310P3.png)" in text


def test_a_plot_of_eight_lines_reads_at_a_glance():
    """Issue 21 item 5: legend outside the axes, value labels that do not overlap, a colour
    and a marker of its own per line, a title naming the machine and what the lines share."""
    groups = []
    for index in range(8):  # close figures, so that their labels collide unless moved apart
        members = [make_report("mobilenetv1", "Ascend310P3", bs, 300.0 + index) for bs in (1, 4)]
        for member in members:
            member["perf"]["streams"] = 1 + index
        groups.append(members)
    ref = readme.reference_fps(config.load("mobilenetv1"), "Ascend310P3")
    seen = {}

    def inspect(fig):
        [ax] = fig.axes
        renderer = fig.canvas.get_renderer()
        seen["axes"] = ax.get_window_extent(renderer)
        seen["legend"] = fig.legends[0].get_window_extent(renderer)
        seen["labels"] = [t.get_window_extent(renderer) for t in ax.texts]
        seen["styles"] = [(line.get_color(), line.get_marker()) for line in ax.get_lines()]
        seen["title"] = ax.get_title()

    readme.plot_png("mobilenetv1", "Ascend310P3", groups, ref, inspect=inspect)
    assert not seen["legend"].overlaps(seen["axes"])
    labels = seen["labels"]
    assert len(labels) == 8  # each line's best point
    assert not any(a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1:])
    assert len(set(seen["styles"])) == len(seen["styles"]) == 9  # 8 lines and the reference
    assert len({c for c, _ in seen["styles"]}) == 9 and len({m for _, m in seen["styles"]}) == 9
    assert "Test CPU (2 cores)" in seen["title"] and "random weights" in seen["title"]


def test_cli_writes_then_check_passes(zoo):
    models, reports_dir, root = zoo
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 1, 290.0))
    args = ["--models", str(models), "--reports", str(reports_dir), "--root", str(root)]
    with pytest.raises(SystemExit) as stop:
        readme.main(args + ["--check"])
    assert stop.value.code == 1
    readme.main(args)
    assert (models / "mobilenetv1" / "perf_cpu.png").is_file()
    assert not (models / "othernet" / "perf_cpu.png").exists()
    with pytest.raises(SystemExit) as stop:
        readme.main(args + ["--check"])
    assert stop.value.code == 0
    # a chip whose reports are gone loses its plot
    shutil.rmtree(reports_dir / "mobilenetv1")
    readme.main(args)
    assert not (models / "mobilenetv1" / "perf_cpu.png").exists()


def test_malformed_reports_are_coerced_or_skipped_with_one_warning_each(zoo, capsys):
    """`make readme` must not give a traceback on a report it cannot use as is (issue 10)."""
    models, reports_dir, root = zoo
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 1, 290.0))
    folder = reports_dir / "mobilenetv1"
    (folder / "cpu_bs4.json").write_text(json.dumps(
        dict(make_report("mobilenetv1", "cpu", 4, 350.0), batch_size="4")))
    no_keys = {k: v for k, v in make_report("mobilenetv1", "cpu", 16, 360.0).items()
               if k not in ("soc", "batch_size", "gate", "dataset", "timestamp")}
    (folder / "cpu_bs16.json").write_text(json.dumps(no_keys))
    (folder / "cpu_bs32.json").write_text(json.dumps(
        dict(make_report("mobilenetv1", "cpu", 32, 1.0), perf="fast", accuracy=[1],
             dataset={"images": "many"}, environment="none")))
    (folder / "cpu_bs64.json").write_text("not json at all")
    (folder / "cpu_bs2.json").write_text(json.dumps(
        dict(make_report("mobilenetv1", "cpu", 2, 300.0), batch_size="two")))
    rendered = render(models, reports_dir, root)
    warnings = capsys.readouterr().err.strip().splitlines()
    for name in ("cpu_bs4.json", "cpu_bs16.json", "cpu_bs32.json", "cpu_bs64.json"):
        assert len([ln for ln in warnings if ln.startswith(f"warning: {folder / name}: ")]) == 1, \
            (name, warnings)
    # an unusable batch_size is read from the file name, and the warning says so
    [bs2] = [ln for ln in warnings if ln.startswith(f"warning: {folder / 'cpu_bs2.json'}: ")]
    assert '"two" is not an integer' in bs2 and "read as 2 (the file name)" in bs2
    assert len(warnings) == 5
    text = rendered[str(models / "mobilenetv1" / "README.md")]
    # bs16 lost its dataset: another image set, so a table of its own
    for bs in ("1", "2", "**4** ★", "**16** ★"):
        assert table_row(text, bs), bs
    [row32] = table_row(text, "32")
    assert "— | — |" in row32  # its throughput and accuracy were unusable: shown as missing
    # and the command line renders and writes without a traceback
    args = ["--models", str(models), "--reports", str(reports_dir), "--root", str(root)]
    readme.main(args)
    assert (models / "mobilenetv1" / "perf_cpu.png").is_file()


# -- the quick start runs as written --------------------------------------------------------

def bash_blocks(text):
    return [block for block in re.findall(r"```bash\n(.*?)```", text, re.S)]


@pytest.mark.slow
@pytest.mark.parametrize("name", config.model_names())
def test_quick_start_commands_run_in_a_copy_of_the_folder(name, tmp_path, shared_data, repo):
    """Preprocess, export (random weights), infer and postprocess exactly as the README says,
    in a copy of the folder. The Ascend-only tools are stood in for: `atc` by the CPU compile
    step, `python3 -m ais_bench` by the project's runner with the same flags."""
    folder = config.model_dir(name)
    needed = ["preprocess.py", "pth2onnx.py", "postprocess.py"]
    if not all(os.path.isfile(os.path.join(folder, f)) for f in needed):
        pytest.skip(f"{name}: scripts not written yet")
    pytest.importorskip("npuzoo.bench")
    work = tmp_path / name
    shutil.copytree(folder, work)
    cfg = config.load(name)
    text = readme.render_model(name)
    python = sys.executable
    lines = ["set -euo pipefail", "bs=4", f"imagenet={shared_data / 'imagenet-val-10'}",
             "export PS4='+ $SECONDS s: '", "set -x"]
    blocks = bash_blocks(text)
    if cfg.upstream.sources:
        cache = repo / ".venv" / "sdists"
        pypi = [b for b in blocks if "pip download" in b]
        if not pypi or not cache.is_dir():
            pytest.skip("no cached sdist for the offline source step")
        for line in pypi[0].splitlines():
            line = line.strip()
            if line.startswith("pip download"):  # tests never download: the cached sdist
                lines.append(f"mkdir -p sdist && cp {cache}/* sdist/")
            elif line:
                lines.append(line)
    for block in blocks:
        for line in block.splitlines():
            line = line.strip()
            if line.startswith(("python3 preprocess.py", "mkdir -p result",
                                "python3 postprocess.py")):
                lines.append(line.replace("python3 ", f"{python} ", 1))
            elif line.startswith("python3 pth2onnx.py"):
                lines.append(line.replace(f" {cfg.weights.file} ", " random ")
                             .replace("python3 ", f"{python} ", 1))
            elif line.startswith("atc "):
                lines.append(f"{python} -m npuzoo.compile {name}.onnx {name}_bs${{bs}}.onnx "
                             "--batch ${bs}")
            elif line.startswith("python3 -m ais_bench"):
                lines.append(line.replace("python3 -m ais_bench", f"{python} -m npuzoo.bench", 1)
                             .replace(f"{name}_bs${{bs}}.om", f"{name}_bs${{bs}}.onnx")
                             .replace(f"--loop {config.perf_defaults(cfg)['loop']} ",
                                      "--loop 2 "))  # the flags, not the timing
    script = "\n".join(lines) + "\n"
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1200)
    print(proc.stderr)
    assert proc.returncode == 0, script + proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((work / "result_bs4.json").read_text())
    assert result["value"][0] == {"key": "Number of images", "value": "10"}


def test_two_machines_give_separate_rows_tables_and_plot_lines(zoo, monkeypatch):
    from npuzoo import history

    models, reports_dir, root = zoo
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 1, 15.3))
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 4, 16.5))
    other = make_report("mobilenetv1", "cpu", 16, 252.3, images=300,
                        timestamp="2025-11-15T00:00:00Z")
    other["device"] = "AMD EPYC (2 cores)"
    other["machine"] = history.fingerprint("cpu", other["device"])
    write_report(reports_dir, other)
    aipp = dict(make_report("mobilenetv1", "cpu", 4, 40.0), variant="aipp", backend={
        "name": "onnxruntime", "version": "1", "aipp": True})
    path = reports_dir / "mobilenetv1" / "aipp" / "cpu_bs4.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(aipp))

    rendered = render(models, reports_dir, root)
    top = rendered[str(root / "README.md")]
    rows = [ln for ln in top.splitlines() if ln.startswith("| [mobilenetv1]") and "| cpu" in ln]
    assert len(rows) == 3
    [here] = [r for r in rows if "Test CPU" in r and "| cpu (ONNX Runtime) |" in r]
    [epyc] = [r for r in rows if "AMD EPYC" in r]
    [with_aipp] = [r for r in rows if "| cpu aipp (ONNX Runtime) |" in r]
    assert "**16.5** ★" in here and "252.3" not in here  # ★ picks within the row
    assert "**252.3** ★" in epyc and "15.3" not in epyc
    assert "**40.0** ★" in with_aipp
    text = rendered[str(models / "mobilenetv1" / "README.md")]
    assert "#### cpu (ONNX Runtime): Test CPU (2 cores)" in text
    assert "#### cpu (ONNX Runtime): AMD EPYC (2 cores)" in text
    assert "#### cpu aipp (ONNX Runtime): Test CPU (2 cores)" in text
    assert text.count("![mobilenetv1 throughput vs batch size on cpu](perf_cpu.png)") == 1

    drawn = []
    monkeypatch.setattr(readme, "plot_png",
                        lambda name, soc, groups, ref: drawn.append(groups) or b"png")
    readme.plots("mobilenetv1", str(models), str(reports_dir))
    [groups] = drawn
    assert sorted(len(g) for g in groups) == [1, 1, 2]  # one line per machine and variant


def test_an_int8_row_shows_its_speed_up_and_accuracy_drop_beside_fp32(zoo):
    models, reports_dir, _root = zoo
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 4, 100.0, top1=70.0))
    int8 = make_report("mobilenetv1", "cpu", 4, 150.0, top1=69.5)
    int8["backend"] = {"name": "onnxruntime", "version": "1", "precision": "int8"}
    int8["variant"] = "int8-onnxruntime"
    path = reports_dir / "mobilenetv1" / "int8-onnxruntime" / "cpu_bs4.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(int8))
    text = readme.render_model("mobilenetv1", str(models), str(reports_dir))
    assert "#### cpu int8-onnxruntime (ONNX Runtime): Test CPU (2 cores)" in text
    [row] = [line for line in text.splitlines() if "150.0" in line]
    assert cells(row)[2].strip() == "1.50× fp32 (100.0); top-1 -0.50 pts"

    # the agreement with fp32 on the run's first images, beside the speed-up
    int8["int8_agreement"] = {"images": 200, "top1": 98.5, "top5": 100.0,
                              "max_abs_logit_error": 0.41234, "mean_abs_logit_error": 0.05}
    path.write_text(json.dumps(int8))
    text = readme.render_model("mobilenetv1", str(models), str(reports_dir))
    [row] = [line for line in text.splitlines() if "150.0" in line]
    assert cells(row)[2].strip() == ("1.50× fp32 (100.0); top-1 -0.50 pts; agrees top-1 98.5%, "
                             "top-5 100%, max \\|Δ\\| 0.412")
    os.unlink(reports_dir / "mobilenetv1" / "cpu_bs4.json")  # no fp32 run: the agreement alone
    int8["int8_agreement"].update(top5="all")  # not a number: left out (one warning)
    path.write_text(json.dumps(int8))
    text = readme.render_model("mobilenetv1", str(models), str(reports_dir))
    [row] = [line for line in text.splitlines() if "150.0" in line]
    assert cells(row)[2].strip() == "agrees top-1 98.5%, max \\|Δ\\| 0.412"


def test_the_agreement_changes_only_its_int8_row_of_the_committed_reports(tmp_path):
    """The committed reports rendered as committed, then with `int8_agreement` added to one
    int8 report: that row alone changes, by the agreement after its speed-up."""
    reports_dir = tmp_path / "reports"
    shutil.copytree(Path(config.REPO_ROOT, "reports", "mobilenetv1"), reports_dir / "mobilenetv1")
    before = readme.render_model("mobilenetv1", config.MODELS_DIR, str(reports_dir))
    path = reports_dir / "mobilenetv1" / "int8" / "cpu_bs4.json"
    data = json.loads(path.read_text())
    data["int8_agreement"] = {"images": 200, "top1": 97.0, "top5": 99.5,
                              "max_abs_logit_error": 1.5, "mean_abs_logit_error": 0.1}
    path.write_text(json.dumps(data))
    after = readme.render_model("mobilenetv1", config.MODELS_DIR, str(reports_dir))
    [(removed, added)] = changed_lines({"model": before}, {"model": after}).values()
    assert len(removed) == len(added) == 1 and removed[0].startswith("| **4** ★ | 805.6 |")
    old, new = cells(removed[0]), cells(added[0])
    assert new[2] == old[2].rstrip() + "; agrees top-1 97%, top-5 99.5%, max \\|Δ\\| 1.5 "
    assert new[:2] + new[3:] == old[:2] + old[3:]


def test_an_int8_row_on_another_engine_prefers_that_engines_fp32_and_else_names_the_other(zoo):
    """int8 on OpenVINO beside fp32 on ONNX Runtime only: the cell names the fp32 engine; once
    an fp32 OpenVINO run exists, the comparison is engine to engine."""
    models, reports_dir, _root = zoo
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 4, 100.0, top1=70.0))
    int8 = make_report("mobilenetv1", "cpu", 4, 300.0, top1=69.0)
    int8["backend"] = {"name": "openvino", "version": "1", "precision": "int8"}
    path = reports_dir / "mobilenetv1" / "int8" / "cpu_bs4.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(int8))
    text = readme.render_model("mobilenetv1", str(models), str(reports_dir))
    [row] = [line for line in text.splitlines() if "300.0" in line]
    assert "3.00× fp32 on ONNX Runtime (100.0); top-1 -1.00 pts" in row

    fp32_ov = make_report("mobilenetv1", "cpu", 4, 120.0, top1=70.0)
    fp32_ov["backend"] = {"name": "openvino", "version": "1"}
    path = reports_dir / "mobilenetv1" / "openvino" / "cpu_bs4.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(fp32_ov))
    text = readme.render_model("mobilenetv1", str(models), str(reports_dir))
    [row] = [line for line in text.splitlines() if "300.0" in line]
    assert "2.50× fp32 (120.0); top-1 -1.00 pts" in row


# -- hostile reports: read back like user input ---------------------------------------------

def render_cli(models, reports_dir, root):
    readme.main(["--models", str(models), "--reports", str(reports_dir), "--root", str(root)])


def cells(line):
    """The cells of a Markdown table row: split on `|` that no backslash escapes."""
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def test_a_reports_soc_cannot_point_a_plot_outside_the_repository(zoo, capsys):
    """Issue 19 item 1: a plot's path is built from the soc; a soc that climbs out is refused
    and a PNG outside stays as it was, while the good report still renders."""
    models, reports_dir, root = zoo
    sentinel = root / "sentinel" / "photo.png"
    sentinel.parent.mkdir()
    sentinel.write_bytes(b"the user's photo")
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 1, 290.0))
    evil = make_report("mobilenetv1", "x/../../../sentinel/photo", 1, 100.0)
    path = reports_dir / "mobilenetv1" / "evil" / "cpu_bs1.json"
    path.parent.mkdir()
    path.write_text(json.dumps(evil))
    (models / "mobilenetv1" / "perf_x").mkdir()  # so that the climbing path would resolve
    render_cli(models, reports_dir, root)
    assert sentinel.read_bytes() == b"the user's photo"
    assert os.listdir(models / "mobilenetv1" / "perf_x") == []
    [line] = [ln for ln in capsys.readouterr().err.splitlines() if str(path) in ln]
    assert line.startswith(f"warning: {path}: soc ") and line.endswith("; skipped")
    assert (models / "mobilenetv1" / "perf_cpu.png").is_file()
    assert "290.0" in (models / "mobilenetv1" / "README.md").read_text()


@pytest.mark.parametrize("field, value, why", [
    ("batch_size", 99999999999999999999, "batch_size 99999999999999999999 is out of range"),
    ("perf.throughput", -5, "perf.throughput -5 is not a finite number >= 0"),
    ("perf.latency_ms.p50", -1.0, "perf.latency_ms.p50 -1.0 is not a finite number >= 0"),
    ("accuracy.top1", 250.0, "accuracy.top1 250.0 is not a percentage"),
    ("model", "../../etc", 'model "../../etc" is not a model name'),
    ("machine", {"id": "../../x", "description": "X"}, 'machine.id "../../x" is not an id'),
    ("dataset.name", "x\n# Injected heading", "holds control characters"),
    ("device", "A" * 5000, "too long"),
])
def test_a_report_out_of_bounds_is_refused_in_one_line_and_the_rest_render(
        zoo, capsys, field, value, why):
    """Issue 19 items 10 and 11: a batch size that crashed matplotlib, a negative throughput
    that was marked best, a newline that started a heading: refused, named, skipped."""
    models, reports_dir, root = zoo
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 1, 290.0))
    bad = make_report("mobilenetv1", "cpu", 4, 300.0)
    *parents, last = field.split(".")
    target = bad
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value
    path = reports_dir / "mobilenetv1" / "cpu_bs4.json"
    path.write_text(json.dumps(bad))
    render_cli(models, reports_dir, root)
    err = capsys.readouterr().err.splitlines()
    [line] = [ln for ln in err if str(path) in ln]
    assert line.startswith(f"warning: {path}: ") and why in line and line.endswith("; skipped")
    assert not any("Traceback" in ln for ln in err)
    text = (models / "mobilenetv1" / "README.md").read_text()
    top = (root / "README.md").read_text()
    assert "**290.0** ★" in top and "300.0" not in text and "300.0" not in top
    assert "Injected heading" not in text + top


def test_report_text_cannot_break_a_table_or_inject_html(zoo):
    """Issue 19 item 10: a DATA name, a device and a gate reason full of Markdown and HTML
    render as literal text: every row keeps its columns, no tag or link survives."""
    models, reports_dir, root = zoo
    hostile = make_report("mobilenetv1", "cpu", 4, 300.0)
    hostile["dataset"]["name"] = "x | y <b>bold<b> [link](javascript:alert(1)) `code` *em*"
    hostile["device"] = "<img src=x onerror=alert(1)> $x^$ &amp; CPU"
    hostile["gate"] = {"verdict": "<script>alert(1)</script>", "reason": "a | b\\"}
    hostile["commit"] = "`; rm -rf /`"
    hostile["environment"] = {"python": "3 | <i>x</i>"}
    write_report(reports_dir, hostile)
    render_cli(models, reports_dir, root)
    for path in (models / "mobilenetv1" / "README.md", root / "README.md"):
        text = path.read_text()
        for needle in ("<b>", "<img", "<script", "<i>", " `; rm", "&amp; CPU"):
            assert needle not in text, (path, needle)
        assert not re.search(r"(?<!\\)\]\(javascript:", text)  # `\](` is literal text
        tables = [ln for ln in text.splitlines() if ln.startswith("|") and "300.0" in ln]
        assert tables, path
        for line in tables:
            header = text.splitlines()[text.splitlines().index(line) - 1]
            while not header.startswith("|---"):
                header = text.splitlines()[text.splitlines().index(header) - 1]
            assert len(cells(line)) == len(cells(header)), line
    assert (models / "mobilenetv1" / "perf_cpu.png").is_file()  # `$` did not break the plot


@pytest.mark.parametrize("edit", [
    lambda r: r["dataset"].update(full_validation_set=True, images=None),
    lambda r: r.update(machine={"id": "abc", "description": ["not", "text"]}),
    lambda r: r["dataset"].update(images=[]),
])
def test_a_report_with_fields_missing_where_others_need_them_renders_or_is_skipped(zoo, edit):
    """Found by trying every field with hostile values: these gave tracebacks."""
    models, reports_dir, root = zoo
    write_report(reports_dir, make_report("mobilenetv1", "cpu", 1, 290.0))
    bad = make_report("mobilenetv1", "cpu", 4, 300.0, images=50000, weights="published")
    edit(bad)
    write_report(reports_dir, bad)
    render_cli(models, reports_dir, root)
    assert "**290.0** ★" in (root / "README.md").read_text()


def test_every_committed_report_agrees_with_its_folder_heading_and_plot_line():
    """The variant label a run's plan recorded (npuzoo.plan.variant_label) is the report's
    folder under reports/<model>/, starts its README heading and its row of the top table,
    and labels its plot line: one name for one run everywhere."""
    from pathlib import Path

    from npuzoo import history, plan
    from npuzoo.report import read

    REPO = Path(config.REPO_ROOT)
    found = 0
    for model in config.model_names():
        text = (REPO / "models" / model / "README.md").read_text(encoding="utf-8")
        top = (REPO / "README.md").read_text(encoding="utf-8")
        for path, run in read.model_reports(str(REPO / "reports"), model):
            found += 1
            folder = os.path.relpath(os.path.dirname(path), REPO / "reports" / model)
            variant = history.variant(run)
            assert "variant" in run and (folder if folder != "." else "") == variant, path
            backend = run["backend"]
            own = config.INT8_BACKEND if backend.get("precision") == "int8" else \
                config.load(model).backend
            assert variant == plan.variant_label(bool(backend.get("aipp")), backend.get(
                "precision") or "fp32", run["engine"], own, history.quantizer(run) or ""), path
            label = readme.run_label(run)
            assert label.startswith(" ".join(w for w in (run["soc"], variant) if w) + " ("), path
            assert f"#### {readme.markdown_text(label)}: " in text, (path, label)
            assert f"| {readme.markdown_text(label)} |" in top, (path, label)
            assert readme.group_words([run], escape=readme.plot_text)["chip"] == \
                readme.plot_text(label)
    assert found
