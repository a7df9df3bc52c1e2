"""The documentation holds together: every relative link and every path into this repository that README.md and
docs/ name exists, every `#anchor` names a heading of its page, and every docs reference in the code does too."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE = [*ROOT.glob("*.py"), *(ROOT / "envs").glob("*.py"), *(ROOT / "benchmark").glob("*.py"),
        *(ROOT / "tests").glob("*.py"), *(ROOT / "benchmark").glob("*.sh"), *(ROOT / "benchmark/jobs").glob("*.txt")]
# top-level folders and files of this repository: a backticked path that starts with one of them must exist
REPO_PREFIXES = ("envs/", "tests/", "benchmark/", "docs/", ".ci/")
REPO_FILES = {path.name for path in ROOT.iterdir() if path.is_file()}


def slug(heading):
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page):
    in_code = False
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def test_slug_follows_github():
    assert slug(" What `envs/` fixes in Rewarped 1.3.3") == "what-envs-fixes-in-rewarped-133"
    assert slug("On DFlex's substep") == "on-dflexs-substep"


def check_target(source, target):
    """`target` (path[#anchor]) relative to the page `source` exists, and so does its anchor."""
    path, _, anchor = target.partition("#")
    page = (source.parent / path).resolve() if path else source
    assert page.exists(), f"{source.name}: {target} does not exist"
    if anchor:
        assert anchor in anchors(page), f"{source.name}: no heading #{anchor} in {page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_exists(page):
    links = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    assert links or page.name != "README.md"
    for target in links:
        if not re.match(r"[a-z]+://", target):
            check_target(page, target)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_path_into_the_repository_exists(page):
    for name in re.findall(r"`([^`\s]+)`", page.read_text()):
        path = name.split("::")[0].rstrip(",.:;")
        if "{" in path or "*" in path or "<" in path:  # a pattern (runs/{run_name}/..., gpu_<name>.md)
            continue
        if path.startswith(REPO_PREFIXES) or path in REPO_FILES:
            assert (ROOT / path).exists(), f"{page.name} names `{name}`, which does not exist"


def test_every_docs_reference_in_the_code_names_an_existing_heading():
    references = 0
    for source in CODE:
        for target in re.findall(r"docs/[\w-]+\.md(?:#[\w-]+)?", source.read_text()):
            check_target(ROOT / "README.md", target)
            references += 1
    assert references > 30  # the scripts cite their equations

