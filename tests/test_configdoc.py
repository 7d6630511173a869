"""config/README.md is what detdistill.configdoc makes of config/schema.yaml, and the schema
documents every key."""

import copy
import subprocess
import sys

import pytest
import yaml

from detdistill.configdoc import SCHEMA, UndocumentedKeys, render

from conftest import REPO


@pytest.fixture(scope="module")
def schema():
    return yaml.safe_load(SCHEMA.read_text())


def test_committed_config_readme_is_up_to_date(schema):
    committed = (REPO / "config" / "README.md").read_text()
    assert committed == render(schema), (
        "config/README.md is stale: run `python -m detdistill.configdoc > config/README.md`"
    )


def test_every_key_of_the_shipped_configs_has_a_row(schema):
    """The digits default's keys, nested ones dotted, appear in the table of their section."""
    document = render(schema)
    digits = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["datasets"]["digits"]
    for section in ["source", "generator", "prototypes", "synthesis", "refinement", "evaluation"]:
        for key in digits[section]:
            assert f"| `{section}.{key}` |" in document
    # the generator's training settings, detector and judge (sharing `classifier`) and evaluation
    # (`train`) are one section each, after the dataset's
    sections = dict(part.split("\n", 1) for part in document.split("\n## ")[1:])
    assert list(sections) == ["Top level", "noise_experiment", "dataset", "label_noise", "embedded_train", "classifier", "train"]
    noise = yaml.safe_load((REPO / "config" / "noise.yaml").read_text())["noise_experiments"]["noise_digits"]
    for key in noise:
        assert f"| `{key}` |" in sections["noise_experiment"], key
    for key in noise["settings"]["asym40"]:
        assert f"| `{key}` |" in sections["label_noise"], key
    for section, keys in [("embedded_train", digits["generator"]["train"]), ("classifier", digits["detector"]),
                          ("train", digits["detector"]["train"])]:
        for key in keys:
            assert f"| `{key}` |" in sections[section], (section, key)


def test_a_key_without_description_is_named(schema):
    broken = copy.deepcopy(schema)
    del broken["$defs"]["dataset"]["properties"]["refinement"]["properties"]["beta"]["description"]
    del broken["$defs"]["train"]["properties"]["lr"]["description"]
    with pytest.raises(UndocumentedKeys) as error:
        render(broken)
    assert "dataset: refinement.beta" in str(error.value) and "train: lr" in str(error.value)


def test_command_line_writes_the_document_or_one_error_line(tmp_path, schema):
    ok = subprocess.run([sys.executable, "-m", "detdistill.configdoc"], capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0 and ok.stdout == render(schema)

    broken = copy.deepcopy(schema)
    del broken["properties"]["seed"]["description"]
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(broken))
    failed = subprocess.run(
        [sys.executable, "-m", "detdistill.configdoc", str(path)], capture_output=True, text=True, cwd=REPO
    )
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.strip().splitlines() == [
        f"{path}: add a `description` to Top level: seed (then re-run python -m detdistill.configdoc > config/README.md)"
    ]
