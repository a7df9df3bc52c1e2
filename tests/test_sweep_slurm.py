"""`benchmark/sweep.py --executor slurm` on a real single-node SLURM cluster: `bash benchmark/slurm/cluster.sh up`
starts one (`.ci/run` does, before the tests). Without a cluster these tests are skipped and say why."""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def why_no_slurm():
    if shutil.which("sinfo") is None:
        return "SLURM is not installed; `bash benchmark/slurm/cluster.sh up` installs and starts one (needs root)"
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if result.returncode != 0 or not re.search(r"idle|mixed|allocated", result.stdout):
        reason = (result.stderr.strip().splitlines() or [result.stdout.strip() or "no node"])[0]
        return f"no SLURM node is up ({reason}); start one with `bash benchmark/slurm/cluster.sh up`"
    return None


pytestmark = pytest.mark.skipif(why_no_slurm() is not None, reason=str(why_no_slurm()))


def sweep(job_file, workdir, *extra, background=False):
    command = [sys.executable, str(REPO / "benchmark" / "sweep.py"), str(job_file), "--workdir", str(workdir), *extra]
    if background:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def slurm_sweep(job_file, workdir, background=False):
    return sweep(job_file, workdir, "--executor", "slurm", "--partition", "local", "--poll-s", "0.5",
                 background=background)


def eval_lines(workdir):
    """{job: its final 'eval: ...' line}, from the sweep's job logs."""
    logs = Path(workdir) / "runs" / "sweep_logs"
    return {log.stem: re.findall(r"^eval: .*$", log.read_text(), re.MULTILINE)[-1] for log in logs.glob("*.log")}


def test_three_jobs_through_slurm_end_as_through_the_local_executor(tmp_path):
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("".join(f"{script} --env-id CartPole --num-envs 4 --horizon 8 --total-timesteps 64 --seed {seed}\n"
                            for script, seed in (("shac_dflex.py", 1), ("rpo_continuous_dflex.py", 2),
                                                 ("ppo_dflex.py", 3))))
    local = sweep(jobs, tmp_path / "local")
    assert local.returncode == 0, local.stdout + local.stderr
    slurm = slurm_sweep(jobs, tmp_path / "slurm")
    assert slurm.returncode == 0, slurm.stdout + slurm.stderr
    assert len(re.findall(r": SLURM job \d+", slurm.stdout)) == 3
    local_evals = eval_lines(tmp_path / "local")
    assert len(local_evals) == 3 and eval_lines(tmp_path / "slurm") == local_evals

    status = sweep(jobs, tmp_path / "slurm", "--status")
    assert status.stdout.count(": done") == 3
    again = slurm_sweep(jobs, tmp_path / "slurm")  # a rerun submits nothing that finished
    assert again.stdout.count("skipped (finished earlier)") == 3 and "SLURM job" not in again.stdout


def test_a_requeued_job_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path):
    """`scontrol requeue` after the job's first checkpoint: SLURM's SIGTERM stops the script, which
    checkpoints; the requeued job resumes and ends with the same evaluation returns as without the requeue."""
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("sapo_dflex.py --env-id CartPole --num-envs 16 --horizon 16 --total-timesteps 3072 --seed 5 "
                    "--checkpoint-every 1\n")
    local = sweep(jobs, tmp_path / "local")
    assert local.returncode == 0, local.stdout + local.stderr

    workdir = tmp_path / "slurm"
    process = slurm_sweep(jobs, workdir, background=True)
    deadline = time.time() + 600
    while not list(workdir.glob("runs/*/checkpoint.pt")):
        assert process.poll() is None and time.time() < deadline, "the job wrote no checkpoint"
        time.sleep(0.05)
    (id_file,) = workdir.glob("runs/sweep_logs/*.slurm")
    job_id = id_file.read_text().strip()
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    # SLURM holds a requeued job for two minutes before it may start again; let it start at once
    while "BeginTime" not in subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%r"], capture_output=True,
                                            text=True).stdout:
        assert time.time() < deadline, "the requeued job was not held"
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output

    (log,) = workdir.glob("runs/sweep_logs/*.log")
    text = log.read_text()
    assert re.search(r"^stopped by SIGTERM after iteration \d+: run the same command with --resume", text, re.M)
    assert re.search(r"^run directory: \S+ \(resumed after iteration \d+ of 12\)$", text, re.M)
    assert eval_lines(workdir) == eval_lines(tmp_path / "local")


def test_a_bad_job_line_fails_alone_with_the_scripts_error(tmp_path):
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("no_such_script.py --env-id CartPole\n"
                    "shac_dflex.py --env-id CartPole --no-such-flag\n"
                    "shac_dflex.py --env-id CartPole --num-envs 4 --horizon 8 --total-timesteps 32 --no-evaluate\n")
    result = slurm_sweep(jobs, tmp_path)
    assert result.returncode == 1
    assert re.search(r"no_such_script__env-id_CartPole: FAILED: .*can't open file .*no_such_script.py", result.stdout)
    assert "shac_dflex__env-id_CartPole__no-such-flag: FAILED: Unrecognized options: --no-such-flag" in result.stdout
    assert re.search(r"total-timesteps_32__no-evaluate: finished", result.stdout)
    status = sweep(jobs, tmp_path, "--status").stdout
    assert "no-such-flag: failed or stopped: Unrecognized options: --no-such-flag" in status
    assert "no-evaluate: done" in status
