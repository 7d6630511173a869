"""The documentation works as printed: docs/own-data.md's steps run word for word on a tiny image
folder, every docs page is in the site's navigation, and every README link leads somewhere."""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, copy_workflow
from sd_fixtures import write_class_images

DOCS = REPO / "docs"
# an HTML comment before a fenced block marks it for this test: `run` runs it as printed,
# `dry-run` runs its one command with --dry-run appended (a whole distillation is minutes of CPU)
MARKED_BLOCK = re.compile(r"^<!-- test: (run|dry-run) -->\n```bash\n(.*?)^```$", re.M | re.S)
OWN_DATA_CLASSES = ["daisy", "rose", "tulip"]


def marked_blocks(page: Path) -> list[tuple[str, str]]:
    return MARKED_BLOCK.findall(page.read_text())


def nav_pages(nav) -> list[str]:
    """The page paths of a mkdocs `nav` (nested lists of {title: path or list})."""
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_own_data_page_runs_as_printed(tmp_path):
    workdir = copy_workflow(tmp_path / "checkout")
    # the page runs from a checkout whose environment is .venv: this test's own interpreter's
    (workdir / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    write_class_images(workdir / "data" / "flowers", {"train": 12, "test": 4}, OWN_DATA_CLASSES, size=(20, 40))
    blocks = marked_blocks(DOCS / "own-data.md")
    assert [kind for kind, _ in blocks] == ["run", "run", "run", "dry-run"], "docs/own-data.md: the marked steps changed"
    outputs = []
    for kind, script in blocks:
        if kind == "dry-run":
            (command,) = [line for line in script.splitlines() if line.strip()]
            script = command + " --dry-run"
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=workdir, capture_output=True, text=True)
        assert proc.returncode == 0, f"docs/own-data.md step failed:\n{script}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        outputs.append(proc.stdout + proc.stderr)

    _, plan, listing, distill = outputs
    entry = yaml.safe_load((workdir / "config" / "flowers.yaml").read_text())["datasets"]["flowers"]
    assert entry["source"] == {"kind": "imagefolder", "root": "data/flowers"}
    # the check plans the whole distillation, from the page's config, on the folder's classes
    for rule in ["prepare_data", "prepare_generator", "train_classifier", "build_refined_set", "aggregate_results"]:
        assert re.search(rf"^{rule}\s+\d+$", plan, re.M), f"the dry run plans no {rule}:\n{plan[-3000:]}"
    manifest = pd.read_parquet(workdir / "results" / "flowers" / "data" / "manifest.parquet")
    assert sorted(manifest.class_name.unique()) == OWN_DATA_CLASSES
    assert manifest.groupby("split").size().to_dict() == {"test": 4 * 3, "train": 12 * 3}
    # the page's printout of the manifest: each class with its count in both splits
    printed = {(words[-2], int(words[-1])) for words in map(str.split, listing.splitlines())
               if len(words) >= 2 and words[-2] in OWN_DATA_CLASSES}
    assert printed == {(name, count) for name in OWN_DATA_CLASSES for count in (4, 12)}, listing
    # the distillation picks up after the manifest: the data stage is done, the rest is planned
    assert not re.search(r"^prepare_data\s+\d+$", distill, re.M), distill[-3000:]
    assert re.search(r"^prepare_generator\s+1$", distill, re.M), distill[-3000:]


def test_every_docs_page_is_in_the_navigation():
    site = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    in_nav = nav_pages(site["nav"])
    pages = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))
    assert sorted(in_nav) == pages, f"pages missing from mkdocs.yml's nav: {sorted(set(pages) - set(in_nav))}; " \
        f"nav entries without a page: {sorted(set(in_nav) - set(pages))}"


@pytest.mark.parametrize("document", ["README.md", "CHANGELOG.md"])
def test_every_relative_link_leads_to_a_file(document):
    text = (REPO / document).read_text()
    targets = [target for target in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", target)]
    assert targets or document == "CHANGELOG.md"
    missing = [target for target in targets if not (REPO / target.split("#")[0]).exists()]
    assert not missing, f"{document} links to files that do not exist: {missing}"


def test_readme_shows_the_two_commands_ci_runs():
    """The README's first block is the two commands of a fresh machine; its test command is the one
    .ci/run runs."""
    readme = (REPO / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line for line in first_block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    assert commands[1].endswith(".venv/bin/python -m pytest")
    assert ".venv/bin/python -m pytest" in (REPO / ".ci" / "run").read_text()
