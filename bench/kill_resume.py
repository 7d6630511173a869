"""Kill a run at random points of its long stages, resume it as the README says, compare.

Usage: python bench/kill_resume.py --trials 10 --seed 0 --workdir /tmp/kill_resume --out bench/measurements/kill_resume

Runs the workflow once uninterrupted (the reference), then per trial: a copy of the finished
reference (Snakemake's metadata and mtimes kept) without the outputs of the trial's stage and of
what depends on them (the jobs `--forcerun RULE` would redo) and without the stage's cached
images, so a run of TARGET is a run in which that stage is next, started in its own process group; when the stage's job starts (its log
file appears: the script has imported torch and set up logging) a seeded random delay of 5-95%
of that job's reference duration is waited, then the whole group gets SIGKILL or SIGINT (as a
killed node or a Ctrl-C would). Then `snakemake --unlock` and `snakemake TARGET --rerun-incomplete`,
and the trial asserts:
- the resumed run completes;
- every file under results/ is byte-identical to the reference's (SHA-256), the image cache
  included; nothing is left over: no hidden temporary file or staging folder anywhere in
  results/ except killed writes' `.<key>.png.tmp-*` files in the image cache, which no look-up
  reads (counted in the report);
- no finished job is redone: every file that existed at the kill and was not an output of a job
  Snakemake marked incomplete (`.snakemake/incomplete/`) is the same file afterwards (inode and mtime unchanged), cached images included, so
  images (classes) generated before the kill are not generated again.

Stages cycle through evaluation, candidates, detector, synthesis, generator training; signals
alternate (SIGKILL on even trials, SIGINT on odd ones), so 10 trials kill every stage both ways. The default config is the test
suite's tiny digits config and the target one evaluation, so that each stage's job is on the
target's path. Writes OUT.json (every trial) and OUT.md (a table); exits 1 if a trial failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import random
import shutil
import sys
import time
from pathlib import Path

from detdistill.testing.kill_resume import SIGNALS, STAGES, file_records, markdown, run, snakemake_cmd, trial
from detdistill.testing.machine import cpu_description
from detdistill.testing.workflow_run import copy_workflow

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configfile", default=str(REPO / "tests" / "config" / "tiny.yaml"))
    parser.add_argument("--dataset", default="tiny")
    parser.add_argument("--ipc", type=int, default=2)
    parser.add_argument("--target", default=None, help="default: results/DATASET/ipcIPC/eval/conf_sim/convnet.parquet")
    parser.add_argument("--workdir", required=True, help="a scratch folder (emptied)")
    parser.add_argument("--out", help="writes OUT.json and OUT.md")
    parser.add_argument("--keep", action="store_true", help="keep the trials' folders")
    parser.add_argument("--reuse-reference", action="store_true", help="keep WORKDIR/reference if it holds the target")
    args = parser.parse_args()
    args.target = args.target or f"results/{args.dataset}/ipc{args.ipc}/eval/conf_sim/convnet.parquet"
    ref_dir = Path(args.workdir) / "reference"
    t0, reference_s = time.monotonic(), None
    if not (args.reuse_reference and (ref_dir / args.target).is_file()):
        shutil.rmtree(args.workdir, ignore_errors=True)
        copy_workflow(REPO, ref_dir)
        shutil.copy2(args.configfile, ref_dir / "run.yaml")
        proc = run(ref_dir, snakemake_cmd(args.target))
        if proc.returncode:
            sys.exit(f"the reference run failed:\n{proc.stderr[-3000:]}")
        reference_s = round(time.monotonic() - t0, 1)
    for old_trial in Path(args.workdir).glob("trial*"):
        shutil.rmtree(old_trial)
    report = {
        "date": dt.date.today().isoformat(),
        "machine": f"{cpu_description()}, {platform.system()} {platform.release()}",
        "command": "python bench/kill_resume.py " + " ".join(sys.argv[1:]),
        "configfile": str(Path(args.configfile).relative_to(REPO)) if Path(args.configfile).is_relative_to(REPO) else args.configfile,
        "target": args.target,
        "reference_s": reference_s,
    }
    reference = file_records(ref_dir / "results")
    report["reference_artifacts"] = len(reference)
    trials = []
    for i in range(args.trials):
        stage = list(STAGES)[i % len(STAGES)]  # every stage in turn; signals alternate, so 10 trials give each stage both
        sig = SIGNALS[i % len(SIGNALS)]
        fraction = random.Random(args.seed * 1000 + i).uniform(0.05, 0.95)
        log_rel = STAGES[stage][1].format(ds=args.dataset, ipc=args.ipc)
        result = trial(i, stage, sig, fraction, args.target, ref_dir, Path(args.workdir) / f"trial{i:02d}", log_rel, args.keep)
        print(json.dumps({k: result.get(k) for k in ("trial", "stage", "signal", "passed", "jobs_running_at_kill", "redone", "differing")}), flush=True)
        trials.append(result)
        report["trials"] = trials
        if args.out:  # after every trial, so an interrupted benchmark keeps what it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(f"{args.out}.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
            Path(f"{args.out}.md").write_text(markdown(report))
    if not all(t.get("passed") is not False for t in trials):
        sys.exit(1)


if __name__ == "__main__":
    main()
