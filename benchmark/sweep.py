"""Run a list of training jobs with a few parallel workers, each job's output in its own log; jobs that finished
in an earlier sweep are skipped, so an interrupted sweep resumes where it stopped.

    python benchmark/sweep.py benchmark/jobs/cpu_hour.txt --workers 2

A job file holds one job per line: an algorithm script and its arguments, `#` starts a comment. Jobs run in
--workdir (default: the repository root), so their TensorBoard logs land in its runs/ as usual; their console
output goes to runs/sweep_logs/{job}.log, and runs/sweep_logs/{job}.done marks a job that exited cleanly.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_jobs(path):
    jobs = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                jobs.append(shlex.split(line))
    return jobs


def job_name(job):
    """A readable file name from the job's command line, e.g. rpo_continuous_dflex__env-id_Ant__seed_1."""
    name = os.path.basename(job[0]).removesuffix(".py") + "".join(
        ("__" if part.startswith("--") else "_") + part.lstrip("-") for part in job[1:]
    )
    return re.sub(r"[^A-Za-z0-9_.=-]", "-", name)


def run_job(job, log_dir, threads, workdir):
    name = job_name(job)
    done = os.path.join(log_dir, name + ".done")
    if os.path.exists(done):
        return name, "skipped (finished earlier)"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.time()
    with open(os.path.join(log_dir, name + ".log"), "w") as log:
        command = [sys.executable, os.path.join(REPO, job[0])] + job[1:]
        returncode = subprocess.call(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.time() - start
    if returncode != 0:
        return name, f"FAILED with exit code {returncode} after {wall:.0f} s, see {name}.log"
    with open(done, "w") as f:
        f.write(f"{wall:.1f}\n")
    return name, f"finished in {wall:.0f} s"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job_file", help="one job per line: script and arguments")
    parser.add_argument("--workers", type=int, default=2, help="jobs run at the same time (Warp's CPU simulation "
                        "uses one core per job)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job (OMP_NUM_THREADS)")
    parser.add_argument("--workdir", default=REPO, help="where the jobs run; their logs go to {workdir}/runs/")
    parser.add_argument("--log-dir", help="job logs and .done markers (default: {workdir}/runs/sweep_logs)")
    args = parser.parse_args()
    args.log_dir = args.log_dir or os.path.join(args.workdir, "runs", "sweep_logs")
    jobs = read_jobs(args.job_file)
    for job in jobs:
        if not os.path.isfile(os.path.join(REPO, job[0])):
            sys.exit(f"error: {args.job_file}: no script {job[0]!r} in {REPO}")
    os.makedirs(args.log_dir, exist_ok=True)
    start = time.time()
    failed = 0
    with ThreadPoolExecutor(args.workers) as pool:
        futures = [pool.submit(run_job, job, args.log_dir, args.threads, args.workdir) for job in jobs]
        for i, future in enumerate(futures, 1):
            name, outcome = future.result()
            failed += outcome.startswith("FAILED")
            print(f"[{i}/{len(jobs)}] {name}: {outcome}", flush=True)
    print(f"{len(jobs)} jobs, {failed} failed, {time.time() - start:.0f} s wall with {args.workers} workers")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
