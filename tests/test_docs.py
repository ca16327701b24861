"""Every reference resolves inside the repository (issue 11, item 6).

A user who clones the repository has its files and nothing else. So a committed file (`git
ls-files`, PNG plots and JSON results left out) that names a Markdown document must name one
that is committed, the project's documentation lives in docs/, and no file holds a path of the
machine it was written on. Tests and examples may use the folders beside the repository,
../shared/data and ../shared/third_party (docs/design.md, "Beside the repository"), but no
document there is cited.

A reference (a path ending in `.md`) resolves when it names a committed file relative to the
citing file's folder, to the repository root, or as the end of a committed path (`README.md`,
`mobilenetv1/README.md`). Template placeholders (`models/<name>/README.md`, `{{ name }}`) and
URLs are not references; tests may name the README of a model they make up in a temporary
folder (`models/othernet/README.md`).
"""

import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIPPED = (".png", ".json")

# A path-like token ending in `.md` (not `.md.j2`); placeholders are captured whole, then skipped.
MD_REFERENCE = re.compile(r"(?<![\w./<>{}*$-])([\w./<>{}*$-]*[\w>}*]\.md)(?!\w|\.j2)")
PLACEHOLDER = re.compile(r"[<>{}*$]")
MADE_UP_MODEL_README = re.compile(r"^models/[\w-]+/README\.md$")
# Paths of the machines the project was written on, and the documents beside the repository.
MACHINE_PATH = re.compile(r"(?<![\w.~/-])/(?:work|farm)/")
SHARED_DOCS = re.compile(r"shared[/\\]docs\b")
# Section numbers of documents that are not in the repository (docs/ cite sections by name).
OUTSIDE_SECTION = re.compile(r"\b(?:DESIGN|ais_bench_contract|model_facts|environment)"
                             r"(?:\.md)?\s*§")


def tracked_files():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode()
    return sorted(name for name in listed.split("\0") if name)


def read_text(name):
    """The file's text, or None for a binary or missing (deleted, not yet committed) file."""
    try:
        with open(os.path.join(REPO, name), encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def resolves(reference, citing, tracked):
    folder = os.path.dirname(citing)
    candidates = {os.path.normpath(os.path.join(folder, reference)),
                  os.path.normpath(reference.lstrip("/"))}
    if candidates & tracked:
        return True
    if reference.startswith(("../", "./", "/")):
        return False  # a relative or absolute path names one place: the candidates above
    return any(path.endswith("/" + reference) for path in tracked)


def problems_in(name, text, tracked):
    """`name:line: ...` for every reference of `text` (the content of committed file `name`)
    that does not resolve inside the repository."""
    problems = []
    in_tests = name.startswith("tests/")
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{number}"
        for match in MD_REFERENCE.finditer(line):
            reference = match.group(1)
            if PLACEHOLDER.search(reference) or reference.startswith("//"):
                continue  # a template's placeholder, or a URL
            if in_tests and MADE_UP_MODEL_README.match(reference):
                continue  # the README a test renders for a model it makes up
            if not resolves(reference, name, tracked):
                problems.append(f"{where}: cites {reference}, which is not in the repository "
                                "(cite a docs/ file and its section)")
        if MACHINE_PATH.search(line):
            problems.append(f"{where}: a machine path ({MACHINE_PATH.search(line).group(0)}...); "
                            "use a path relative to the repository")
        if SHARED_DOCS.search(line):
            problems.append(f"{where}: cites the documents beside the repository, which a clone "
                            "does not have; cite docs/ instead")
        if OUTSIDE_SECTION.search(line):
            problems.append(f"{where}: cites a section of a document that is not in the "
                            "repository; cite a docs/ file and its section by name")
    return problems


def test_every_reference_resolves_inside_the_repository():
    tracked = set(tracked_files())
    problems = []
    for name in sorted(tracked):
        if name.endswith(SKIPPED):
            continue
        text = read_text(name)
        if text is not None:
            problems.extend(problems_in(name, text, tracked))
    assert not problems, "\n".join(problems)


def test_the_docs_the_code_cites_are_committed():
    tracked = set(tracked_files())
    for doc in ("docs/design.md", "docs/ais_bench_compatibility.md", "docs/model_facts.md",
                "docs/sweep.md"):
        assert doc in tracked, doc


TRACKED = {"README.md", "docs/design.md", "docs/model_facts.md", "images/README.md",
           "models/mobilenetv1/README.md", "npuzoo/bench.py"}
# The refused examples are built in pieces: this file must pass its own test.
MD = ".md"
OUTSIDE = "../" + "shared/" + "docs/"


@pytest.mark.parametrize("text", [
    "see docs/design.md, \"Locks\"",
    "see [the design](../docs/design.md).",          # from a folder one level down
    "README.md and mobilenetv1/README.md",          # the end of a committed path
    "models/<name>/README.md, {{ name }}/README.md",  # placeholders
    "https://example.org/a/CHANGES" + ".md",        # a URL
    "templates/model_README.md.j2",                 # a template, not a Markdown file
    "cp ../" + "work/x .",                          # relative: not a machine path
])
def test_what_resolves(text):
    assert problems_in("npuzoo/x.py", text, TRACKED) == []


@pytest.mark.parametrize("text, fragment", [
    ("follows " + "DESIGN" + MD + " §3", "cites DESIGN"),
    ("the contract (" + "ais_bench_contract" + MD + ")", "not in the repository"),
    (OUTSIDE + "environment" + MD, "documents beside the repository"),
    ("model_facts" + " §2", "section of a document"),
    ("docs/missing" + MD, "cites docs/missing"),
    ("../README.md", "cites ../README.md"),                     # from npuzoo/sub/: npuzoo's
    ("/" + "work/shared/data", "machine path"),
    ("/" + "farm/x", "machine path"),
])
def test_what_is_refused(text, fragment):
    problems = problems_in("npuzoo/sub/x.py", text, TRACKED)
    assert any(fragment in problem for problem in problems), problems


def test_tests_may_name_the_readme_of_a_made_up_model():
    text = "assert '[zzznet](models/zzznet/README.md)' in top"
    assert problems_in("tests/test_x.py", text, TRACKED) == []
    assert problems_in("npuzoo/x.py", text, TRACKED) != []
