"""Run a list of training jobs, on this machine with a few parallel workers or on a SLURM cluster, each job's
output in its own log; jobs that finished in an earlier sweep are skipped, so an interrupted sweep resumes
where it stopped, and a job stopped mid-run continues from its last checkpoint.

    python benchmark/sweep.py benchmark/jobs/cpu_hour.txt --workers 2
    python benchmark/sweep.py benchmark/jobs/table1_gpu.txt --executor slurm --partition gpu --gpus-per-job 1
    python benchmark/sweep.py benchmark/jobs/table1_gpu.txt --status

A job file holds one job per line: an algorithm script and its arguments, `#` starts a comment. Jobs run in
--workdir (default: the repository root), so their TensorBoard logs land in its runs/ as usual; their console
output goes to runs/sweep_logs/{job}.log, and runs/sweep_logs/{job}.done marks a job that exited cleanly.

A job whose script was stopped (SIGTERM, Ctrl-C, SLURM's preemption or `scontrol requeue`) writes a
checkpoint; its next attempt, in a rerun of the sweep or when SLURM requeues it, passes `--resume` with it.
Add `--checkpoint-every K` to job lines that should also survive a SIGKILL. On SLURM (through submitit) every
job is submitted with `--requeue`; near its time limit submitit stops the script the same way and requeues it.
"""
import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import submitit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTIVE_STATES = {"PENDING": "queued", "REQUEUED": "queued", "CONFIGURING": "queued", "RUNNING": "running",
                 "COMPLETING": "running", "SUSPENDED": "running"}


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


def why_it_ended(path, offset=0):
    """The line of a job's log (from byte `offset`: the last attempt) that says why it ended: its last error
    line, with tyro's box drawn around it stripped, else its last line."""
    try:
        with open(path) as f:
            f.seek(offset)
            lines = [line.strip(" \n│╭╮╰╯─") for line in f]
    except FileNotFoundError:
        return ""
    lines = [line for line in lines if line]
    errors = [line for line in lines if re.search(r"rror|Unrecognized|stopped by SIG", line)]
    return (errors or lines or [""])[-1]


def resume_args(log_path, workdir):
    """`--resume CHECKPOINT` if an earlier attempt of this job (its log) left a checkpoint, else nothing."""
    run_dirs = []
    if os.path.exists(log_path):
        with open(log_path) as f:
            run_dirs = re.findall(r"^run directory: (\S+)", f.read(), re.MULTILINE)
    if run_dirs and os.path.exists(os.path.join(workdir, run_dirs[-1], "checkpoint.pt")):
        return ["--resume", os.path.join(run_dirs[-1], "checkpoint.pt")]
    return []


def run_job(job, log_dir, threads, workdir, on_start=lambda process: None):
    """Run one job in `workdir` (resumed from its checkpoint where an earlier attempt left one), appending its
    output to its log; mark it done if it exits cleanly. Returns (name, outcome)."""
    name = job_name(job)
    log_path, done = os.path.join(log_dir, name + ".log"), os.path.join(log_dir, name + ".done")
    if os.path.exists(done):
        return name, "skipped (finished earlier)"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    command = [sys.executable, os.path.join(REPO, job[0])] + job[1:] + resume_args(log_path, workdir)
    start, offset = time.time(), os.path.getsize(log_path) if os.path.exists(log_path) else 0
    with open(log_path, "a") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
        on_start(process)
        returncode = process.wait()
    wall = time.time() - start
    if returncode != 0:
        reason = why_it_ended(log_path, offset)
        if reason.startswith("stopped by SIG"):
            return name, f"interrupted after {wall:.0f} s, continues from its checkpoint: {reason}"
        return name, f"FAILED with exit code {returncode} after {wall:.0f} s: {reason}"
    with open(done, "w") as f:
        f.write(f"{wall:.1f}\n")
    return name, f"finished in {wall:.0f} s"


class SlurmJob(submitit.helpers.Checkpointable):
    """One job line as a SLURM job. SLURM's SIGTERM (preemption, `scontrol requeue`) reaches the script, which
    checkpoints; near the time limit submitit calls `checkpoint`, which stops the script the same way before
    submitit requeues the job. Every attempt resumes from the script's last checkpoint."""

    def __init__(self):
        self.process = None

    def __call__(self, job, log_dir, threads, workdir):
        return run_job(job, log_dir, threads, workdir, on_start=lambda process: setattr(self, "process", process))

    def checkpoint(self, *args, **kwargs):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait()
        return submitit.helpers.DelayedSubmission(SlurmJob(), *args, **kwargs)


def slurm_states(job_ids):
    """{job id: state} of the given jobs that SLURM still holds as queued or running."""
    if not job_ids:
        return {}
    out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True, text=True)
    states = dict(line.split() for line in out.stdout.splitlines() if line.strip())
    return {job_id: state for job_id, state in states.items() if state in ACTIVE_STATES}


def slurm_id(log_dir, name):
    try:
        with open(os.path.join(log_dir, name + ".slurm")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def run_local(jobs, args):
    outcomes = []
    with ThreadPoolExecutor(args.workers) as pool:
        futures = [pool.submit(run_job, job, args.log_dir, args.threads, args.workdir) for job in jobs]
        for i, future in enumerate(futures, 1):
            name, outcome = future.result()
            outcomes.append(outcome)
            print(f"[{i}/{len(jobs)}] {name}: {outcome}", flush=True)
    return outcomes


def run_slurm(jobs, args):
    """Submit every job that is neither done nor still queued or running, then wait for all of them."""
    executor = submitit.SlurmExecutor(folder=os.path.join(args.log_dir, "slurm"))
    parameters = dict(partition=args.partition, cpus_per_task=args.cpus_per_job, time=args.time_min,
                      additional_parameters={"requeue": True})
    if args.mem_gb:
        parameters["mem"] = f"{args.mem_gb}G"
    if args.gpus_per_job:
        parameters["gpus_per_node"] = args.gpus_per_job
    names = [job_name(job) for job in jobs]
    active = slurm_states([i for i in (slurm_id(args.log_dir, name) for name in names) if i])
    waiting = {}  # job id -> name
    for job, name in zip(jobs, names):
        if os.path.exists(os.path.join(args.log_dir, name + ".done")):
            print(f"{name}: skipped (finished earlier)", flush=True)
            continue
        job_id = slurm_id(args.log_dir, name)
        if job_id not in active:
            executor.update_parameters(job_name=name, **parameters)
            job_id = executor.submit(SlurmJob(), job, args.log_dir, args.threads, args.workdir).job_id
            with open(os.path.join(args.log_dir, name + ".slurm"), "w") as f:
                f.write(job_id + "\n")
        print(f"{name}: SLURM job {job_id}", flush=True)
        waiting[job_id] = name
    outcomes = []
    while waiting:
        time.sleep(args.poll_s)
        still = slurm_states(list(waiting))
        for job_id in [i for i in waiting if i not in still]:
            name = waiting.pop(job_id)
            if os.path.exists(os.path.join(args.log_dir, name + ".done")):
                outcomes.append("finished")
            else:
                outcomes.append(f"FAILED: {why_it_ended(os.path.join(args.log_dir, name + '.log'))}")
            print(f"{name}: {outcomes[-1]}", flush=True)
    return outcomes


def print_status(jobs, args):
    names = [job_name(job) for job in jobs]
    ids = {name: slurm_id(args.log_dir, name) for name in names}
    active = slurm_states([i for i in ids.values() if i]) if any(ids.values()) else {}
    for name in names:
        log = os.path.join(args.log_dir, name + ".log")
        if os.path.exists(os.path.join(args.log_dir, name + ".done")):
            status = "done"
        elif ids[name] in active:
            status = f"{ACTIVE_STATES[active[ids[name]]]} (SLURM job {ids[name]})"
        elif os.path.exists(log):
            status = f"failed or stopped: {why_it_ended(log)}"
        else:
            status = "not started"
        print(f"{name}: {status}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job_file", help="one job per line: script and arguments")
    parser.add_argument("--executor", choices=["local", "slurm"], default="local",
                        help="local: worker processes here; slurm: one SLURM job per job line, through submitit")
    parser.add_argument("--status", action="store_true", help="print one line per job and exit")
    parser.add_argument("--workers", type=int, default=2, help="local: jobs run at the same time (Warp's CPU "
                        "simulation uses one core per job)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job (OMP_NUM_THREADS)")
    parser.add_argument("--workdir", default=REPO, help="where the jobs run; their logs go to {workdir}/runs/")
    parser.add_argument("--log-dir", help="job logs and .done markers (default: {workdir}/runs/sweep_logs)")
    parser.add_argument("--partition", help="slurm: the partition to submit to")
    parser.add_argument("--gpus-per-job", type=int, default=0, help="slurm: GPUs per job")
    parser.add_argument("--cpus-per-job", type=int, default=1, help="slurm: CPU cores per job")
    parser.add_argument("--mem-gb", type=int, default=0, help="slurm: memory per job in GB (0: the cluster's default)")
    parser.add_argument("--time-min", type=int, default=24 * 60, help="slurm: time limit per attempt, minutes")
    parser.add_argument("--poll-s", type=float, default=2.0, help="slurm: seconds between queue checks")
    args = parser.parse_args()
    args.workdir = os.path.abspath(args.workdir)
    args.log_dir = os.path.abspath(args.log_dir or os.path.join(args.workdir, "runs", "sweep_logs"))
    jobs = read_jobs(args.job_file)
    os.makedirs(args.log_dir, exist_ok=True)
    if args.status:
        print_status(jobs, args)
        return
    start = time.time()
    outcomes = run_slurm(jobs, args) if args.executor == "slurm" else run_local(jobs, args)
    failed = sum(outcome.startswith(("FAILED", "interrupted")) for outcome in outcomes)
    print(f"{len(jobs)} jobs, {failed} failed or stopped, {time.time() - start:.0f} s wall ({args.executor})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
