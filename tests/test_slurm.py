"""profiles/slurm on a real SLURM: a throwaway single-node cluster (tests/slurm/cluster.py) runs a
tiny target through `--profile profiles/slurm`; every job must go through sbatch (sacct, the
plugin's job logs) with the resources the rules declare, and every output must equal a local run.

Deselected from the default run (it needs root, Debian packages and writes /etc/slurm); .ci/run
runs it after the main suite. By hand, as root on Debian/Ubuntu:

    .venv/bin/pip install -r envs/requirements.txt -r envs/slurm.txt
    .venv/bin/python tests/slurm/cluster.py install   # slurm-wlm, slurmdbd, munge, mariadb-server
    .venv/bin/python -m pytest -m slurm tests/test_slurm.py

Selected without those, it fails with one line saying what is missing, rather than skipping: a
skip would let CI pass without the test having run.
"""

import filecmp
import importlib.util
import subprocess
import time

import pytest

from conftest import SNAKEMAKE, copy_workflow
from slurm import cluster

pytestmark = pytest.mark.slurm

# Four jobs, two of them gpu=1: a trained classifier and one evaluation. Every rule declares one
# thread; the classifier is given two (in both runs, as a user would) to check the mapping to Slurm.
SET_THREADS = ["--set-threads", "train_classifier=2"]
TARGETS = ["results/tiny/classifiers/detector/metrics.json", "results/tiny/ipc2/eval/random/convnet.parquet"]
RULES = {"prepare_data": False, "select_random_subset": False, "train_classifier": True, "evaluate": True}
# Status polling costs ~20 s per job on top of the work; kill a hung run instead of waiting forever.
RUN_TIMEOUT_S = 900
SACCT_FIELDS = "JobID,JobName,Partition,State,ExitCode,AllocCPUS,AllocTRES,Elapsed,Comment"


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    # pytrace=False: the reason alone, one line, no traceback of the fixture
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail("the SLURM executor plugin is missing: .venv/bin/pip install -r envs/slurm.txt", pytrace=False)
    try:
        with cluster.SlurmCluster(tmp_path_factory.mktemp("slurm-cluster")) as running:
            yield running
        return
    except cluster.ClusterError as error:
        reason = str(error)
    # outside the except block: pytest would print the ClusterError above as well
    pytest.fail(f"the test SLURM cluster did not start: {reason}", pytrace=False)


def test_profile_submits_every_job_through_sbatch_and_matches_a_local_run(slurm_cluster, tmp_path):
    local = copy_workflow(tmp_path / "local")
    remote = copy_workflow(tmp_path / "slurm")
    # The local run shares the two cores with the cluster's jobs; most of the SLURM run's time is
    # status polling, so running both at once saves a local run's worth of wall time.
    local_run = subprocess.Popen([*SNAKEMAKE, "--cores", "2", *TARGETS, *SET_THREADS, "--configfile", "tiny.yaml"],
                                 cwd=local, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    start = time.monotonic()
    proc = subprocess.run(
        [*SNAKEMAKE, "--profile", "profiles/slurm", *TARGETS,
         "--slurm-init-seconds-before-status-checks", "5", "--slurm-keep-successful-logs",
         "--verbose", *SET_THREADS, "--configfile", "tiny.yaml"],
        check=False, cwd=remote, env=slurm_cluster.env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )
    elapsed = time.monotonic() - start
    local_out, _ = local_run.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, f"SLURM run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-8000:]}"
    assert local_run.returncode == 0, f"local run failed:\n{local_out[-8000:]}"

    jobs = slurm_cluster.sacct(SACCT_FIELDS)
    # --verbose makes the plugin log each sbatch command line
    sbatch_calls = [line.split("sbatch call: ", 1)[1] for line in (proc.stdout + proc.stderr).splitlines()
                    if "sbatch call: " in line]
    print(f"\nSLURM run: {len(jobs)} jobs in {elapsed:.0f} s", *sbatch_calls, SACCT_FIELDS.replace(",", "|"),
          *("|".join(job.values()) for job in jobs), sep="\n")

    # One sbatch job per Snakemake job, all of this run (the job name is the run's id), all done.
    by_rule = {job["Comment"].split("_wildcards_")[0].removeprefix("rule_"): job for job in jobs}
    assert sorted(by_rule) == sorted(RULES) and len(jobs) == len(RULES), jobs
    assert len({job["JobName"] for job in jobs}) == 1
    for rule, wants_gpu in RULES.items():
        job = by_rule[rule]
        assert (job["State"], job["ExitCode"], job["Partition"]) == ("COMPLETED", "0:0", "gpu"), job
        # gpu=1 in the rule reached Slurm as a GPU request; the others asked for none
        assert ("gres/gpu=1" in job["AllocTRES"]) == wants_gpu, job
    # The profile's partition and the rules' portable resources, as the plugin passed them
    assert len(sbatch_calls) == len(RULES)
    for call in sbatch_calls:
        rule = call.split("--comment ")[1].split()[0].strip("'").split("_wildcards_")[0].removeprefix("rule_")
        assert "-p gpu" in call and "--mem 16000" in call and "-t 240" in call, call
        assert ("--gpus=1" in call) == RULES[rule] and "--gres" not in call, call
    # --set-threads train_classifier=2 became --cpus-per-task=2
    assert by_rule["train_classifier"]["AllocCPUS"] == "2"
    assert by_rule["prepare_data"]["AllocCPUS"] == "1"

    # The plugin's per-job logs are named by the Slurm job ids that sacct lists.
    logs = {p.stem for p in (remote / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert logs == {job["JobID"] for job in jobs}

    # Same artifacts, byte for byte (models and scores included), as the local run.
    local_files = sorted(p.relative_to(local) for p in (local / "results").rglob("*") if p.is_file())
    remote_files = sorted(p.relative_to(remote) for p in (remote / "results").rglob("*") if p.is_file())
    assert local_files == remote_files
    assert {str(p) for p in local_files} >= set(TARGETS)
    differing = [str(p) for p in local_files if not filecmp.cmp(local / p, remote / p, shallow=False)]
    assert not differing, f"SLURM outputs differ from the local run: {differing}"
