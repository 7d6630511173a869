"""Through Snakemake on the tiny digits config: a run killed in a long stage and resumed as the
README says ends with the uninterrupted run's bytes (bench/kill_resume.py does the killing, with
the session's tiny run as the reference); a changed beta generates candidates only for newly
flagged prototypes; two clean runs write identical bytes. The runs of several minutes are marked
`long` (`pytest -m long`)."""

from __future__ import annotations

import hashlib
import signal

import pandas as pd
import pytest
import yaml

from detdistill.testing import kill_resume

from conftest import REPO, copy_workflow, snakemake

N_CANDIDATES = 3  # tests/config/tiny.yaml
CANDIDATES = "results/tiny/ipc2/candidates/part0"


def results_digests(workdir) -> dict[str, str]:
    """SHA-256 of every file under results/ (artifacts and the image cache). Logs and benchmarks
    (times) and Snakemake's .snakemake metadata are not artifacts."""
    root = workdir / "results"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_file_records_of_a_live_tree_leave_out_what_vanished(tmp_path, monkeypatch):
    """The snapshot at the kill is taken of a running workflow: a temporary file renamed into place
    after the listing, or a staging folder gone before it is read, is left out, not an error (it
    made the resume test fail 1 run in ~20 with FileNotFoundError)."""
    results = tmp_path / "results"
    (results / "tiny").mkdir(parents=True)
    (results / "tiny" / "kept.parquet").write_bytes(b"kept")
    real_walk = kill_resume.os.walk

    def walk_with_vanished(top):
        for root, dirs, names in real_walk(top):
            yield root, dirs, [*names, ".gone.png.tmp-x.png"]  # listed, then renamed away
        yield str(results / "tiny" / ".part0.staging-x"), [], ["c0.png"]  # a folder renamed away

    monkeypatch.setattr(kill_resume.os, "walk", walk_with_vanished)
    records = kill_resume.file_records(results)
    assert list(records) == ["results/tiny/kept.parquet"]
    assert records["results/tiny/kept.parquet"]["sha256"] == hashlib.sha256(b"kept").hexdigest()


@pytest.mark.parametrize(
    "stage, sig",
    [
        ("candidates", signal.SIGKILL),
        pytest.param("synthesis", signal.SIGINT, marks=pytest.mark.long),
        pytest.param("generator training", signal.SIGKILL, marks=pytest.mark.long),
    ],
)
def test_killed_run_resumes_to_the_same_bytes(tiny_run, tmp_path, stage, sig):
    target = "results/tiny/ipc2/eval/conf_sim/convnet.parquet"
    log_rel = kill_resume.STAGES[stage][1].format(ds="tiny", ipc=2)
    record = kill_resume.trial(0, stage, sig, 0.5, target, tiny_run, tmp_path / "trial", log_rel, keep=True, configfile="tiny.yaml")
    assert record["completed"], record.get("error")
    assert record["stage_job_running_at_kill"] and record["jobs_running_at_kill"], record
    assert record["differing"] == [] and record["missing_or_extra"] == []
    assert record["redone"] == [] and record["finished_files_at_kill"] > 0
    assert record["results_leftovers"] == []
    if stage == "candidates":
        # the candidate images stored before the kill were copied, not generated again
        initial_images = len(list((tiny_run / "results/tiny/ipc2/initial/part0").glob("*.png")))
        counts = record["resume_generation"]["generate_candidates/tiny_ipc2_part0"]
        assert counts["reused"] == record["cached_images_at_kill"] - initial_images
        assert counts["reused"] + counts["generated"] == counts["images"]


def _generation_counts(workdir) -> dict[str, int]:
    """The candidates job's reused / generated image counts, from its log."""
    return kill_resume.cache_counts(workdir)["generate_candidates/tiny_ipc2_part0"]


def test_changed_beta_generates_only_newly_flagged_prototypes(tiny_run, tmp_path):
    """From the tiny run with its candidate images taken out of the cache: a lower beta generates
    its (fewer) flagged prototypes; going back to the run's beta generates only the prototypes
    the lower one did not flag, and writes the uninterrupted run's candidates byte for byte."""
    workdir, _ = kill_resume.forced_copy(tiny_run, tmp_path / "wf", "generate_candidates", CANDIDATES, "tiny.yaml")
    anomalies = pd.read_parquet(tiny_run / "results/tiny/ipc2/anomalies.parquet")
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    low_confidence = anomalies[anomalies.reason == "low_confidence"].p_target.sort_values()
    assert len(low_confidence) >= 2, "the tiny config must flag two low-confidence images to split them by beta"
    lower_beta = float(low_confidence.iloc[len(low_confidence) // 2 - 1:len(low_confidence) // 2 + 1].mean())
    config["datasets"]["tiny"]["refinement"]["beta"] = lower_beta
    (workdir / "lower.yaml").write_text(yaml.safe_dump(config))

    snakemake(workdir, CANDIDATES, "--configfile", "lower.yaml")
    lower = pd.read_parquet(workdir / "results/tiny/ipc2/anomalies.parquet")
    assert 0 < lower.defective.sum() < anomalies.defective.sum()
    assert _generation_counts(workdir) == {"images": N_CANDIDATES * int(lower.defective.sum()), "reused": 0,
                                           "generated": N_CANDIDATES * int(lower.defective.sum())}

    snakemake(workdir, CANDIDATES, "--configfile", "tiny.yaml")
    newly_flagged = int((anomalies.defective & ~lower.defective).sum())
    assert _generation_counts(workdir) == {"images": N_CANDIDATES * int(anomalies.defective.sum()),
                                           "reused": N_CANDIDATES * int(lower.defective.sum()),
                                           "generated": N_CANDIDATES * newly_flagged}
    ours, reference = results_digests(workdir), results_digests(tiny_run)
    candidates = [p for p in reference if p.startswith("tiny/ipc2/candidates/")]
    assert candidates and all(ours[p] == reference[p] for p in candidates)
    assert {p for p in ours if "/cache/" in p} == {p for p in reference if "/cache/" in p}


@pytest.mark.long
def test_two_clean_runs_write_identical_bytes(tiny_run, tmp_path):
    workdir = copy_workflow(tmp_path / "again")
    snakemake(workdir, "results/tiny_ipc2.csv", "--configfile", "tiny.yaml")
    first, second = results_digests(tiny_run), results_digests(workdir)
    assert first.keys() == second.keys()
    assert [p for p in first if first[p] != second[p]] == []
    assert any(p.endswith(".safetensors") for p in first) and any("/cache/" in p for p in first)


def test_no_pickle_loading_and_no_shell_rules():
    """Weights are read as safetensors (torch.load only with weights_only=True), and no rule runs
    a shell command, so no config value is ever interpolated into one."""
    sources = [p for d in ("detdistill", "workflow", "bench") for p in (REPO / d).rglob("*") if p.suffix in (".py", ".smk")]
    sources.append(REPO / "Snakefile")
    for path in sources:
        text = path.read_text()
        for line in text.splitlines():
            assert "torch.load(" not in line or "weights_only=True" in line, f"{path}: {line.strip()}"
        if path.suffix == ".smk" or path.name == "Snakefile":
            assert not any(line.strip() in ("shell:", "run:") for line in text.splitlines()), path
