"""The reproduction kit: the sweep resumes, the results table aggregates seeds correctly."""
import os
import subprocess
import sys

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from benchmark import curves

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sweep(job_file, workdir):
    return subprocess.run([sys.executable, os.path.join(REPO, "benchmark", "sweep.py"), str(job_file),
                           "--workers", "2", "--workdir", str(workdir)], capture_output=True, text=True)


def test_sweep_skips_finished_jobs_and_retries_failed_ones(tmp_path):
    job_file = tmp_path / "jobs.txt"
    job_file.write_text(
        "# a finishing job and a failing one\n"
        "shac_dflex.py --env-id CartPole --num-envs 4 --horizon 8 --total-timesteps 32 --no-evaluate\n"
        "shac_dflex.py --env-id NoSuchTask\n"
    )
    first = sweep(job_file, tmp_path)
    assert first.returncode == 1
    assert "finished in" in first.stdout and "FAILED" in first.stdout
    logs = tmp_path / "runs" / "sweep_logs"
    done = sorted(p.name for p in logs.glob("*.done"))
    assert done == ["shac_dflex__env-id_CartPole__num-envs_4__horizon_8__total-timesteps_32__no-evaluate.done"]
    assert "known ids" in (logs / "shac_dflex__env-id_NoSuchTask.log").read_text()
    assert len([d for d in os.listdir(tmp_path / "runs") if d.startswith("CartPole__")]) == 1

    second = sweep(job_file, tmp_path)
    assert "skipped (finished earlier)" in second.stdout and "FAILED" in second.stdout
    assert len([d for d in os.listdir(tmp_path / "runs") if d.startswith("CartPole__")]) == 1  # not run again


def write_run(runs_dir, name, returns, deterministic=None, stochastic=None):
    writer = SummaryWriter(runs_dir / name)
    for step, value in returns:
        writer.add_scalar("charts/episodic_return", value, step)
    if deterministic is not None:
        writer.add_scalar("eval/deterministic_return", deterministic, returns[-1][0])
        writer.add_scalar("eval/stochastic_return", stochastic, returns[-1][0])
    writer.close()


def test_results_table_has_mean_and_sample_std_over_finished_seeds_only(tmp_path):
    runs = tmp_path / "runs"
    finals = {1: (10.0, 1.0), 2: (20.0, 2.0), 3: (60.0, 6.0)}
    for seed, (det, sto) in finals.items():
        write_run(runs, f"Ant__rpo_continuous_dflex__{seed}__100", [(100, 1.0), (200, 2.0)], det, sto)
    write_run(runs, "Ant__rpo_continuous_dflex__4__100", [(100, 1e6)])  # unfinished: no evaluation
    write_run(runs, "CartPole__ppo_dflex__1__100", [(100, -5.0)], -3.0, -4.0)
    experiments = curves.load_runs(str(runs))
    assert len(experiments[("Ant", "rpo_continuous_dflex")]) == 3
    table = curves.table(experiments)
    det = [d for d, _ in finals.values()]
    expected = f"{np.mean(det):.2f} ± {np.std(det, ddof=1):.2f} (3)"
    assert f"| RPO | {expected} | — |" in table
    assert "| RPO, paper | 9215.61 ± 949.91 | — |" in table  # the paper's Ant value beside ours
    assert "| PPO | — | -3.00 ± 0.00 (1) |" in table
    curves.plot(experiments, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_curves_read_one_point_per_episode_and_average_episodes_that_end_at_the_same_step(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "Ant__shac_dflex__1__100", [(100, 1.0), (100, 3.0), (160, -2.0), (200, 5.0)], 0.0, 0.0)
    (run,) = curves.load_runs(str(runs))[("Ant", "shac_dflex")]
    assert run["steps"].tolist() == [100, 160, 200]
    assert run["returns"].tolist() == [2.0, -2.0, 5.0]


def test_gpu_check_stops_at_once_with_a_one_line_message_where_there_is_no_gpu():
    no_gpu = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(["bash", os.path.join(REPO, "benchmark", "gpu_check.sh")], env=no_gpu,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "gpu_check: no usable CUDA GPU here (torch.cuda.is_available() is False); run it on a GPU machine"
    ]


def write_training_run(runs_dir, name, episodes, sps, deterministic):
    """A run whose episodes are (env step, return) and whose charts/SPS is (env step, SPS) per iteration."""
    writer = SummaryWriter(runs_dir / name)
    for step, value in episodes:
        writer.add_scalar("charts/episodic_return", value, step)
    for step, value in sps:
        writer.add_scalar("charts/SPS", value, step)
    writer.add_scalar("eval/deterministic_return", deterministic, sps[-1][0])
    writer.add_scalar("eval/stochastic_return", deterministic, sps[-1][0])
    writer.close()


def test_milestones_use_the_last_100_episodes_and_thresholds_the_first_step_and_training_hours(tmp_path):
    """Seed 1: 150 episodes of return 1 then 150 of return 3, one per 10 env steps, at 100 env steps per second;
    seed 2 never gets above 1. The 100-episode mean at step 2000 (episode 200) is (50 * 1 + 50 * 3) / 100 = 2,
    it first reaches 2.5 at episode 225 (step 2250, 22.5 s)."""
    runs = tmp_path / "runs"
    rising = [(10 * (i + 1), 1.0 if i < 150 else 3.0) for i in range(300)]
    flat = [(10 * (i + 1), 1.0) for i in range(300)]
    sps = [(step, 100) for step in range(100, 3001, 100)]
    write_training_run(runs, "Ant__rpo_continuous_dflex__1__100", rising, sps, 3.0)
    write_training_run(runs, "Ant__rpo_continuous_dflex__2__100", flat, sps, 1.0)
    experiments = curves.load_runs(str(runs))
    (seed_1, _) = sorted(experiments[("Ant", "rpo_continuous_dflex")], key=lambda run: run["seed"])
    steps, means = curves.running_mean(seed_1)
    assert means[steps == 2000][0] == 2.0 and steps[means >= 2.5][0] == 2250
    assert curves.training_hours(seed_1, 2250) * 3600 == 22.5
    table = curves.milestone_table(experiments, [2000], [2.5])
    assert "| RPO | 1.5 ± 0.7 (2) | 0.00M ± 0.00M, 0.01 h ± 0.00 h (1 of 2) |" in table
    # a budget ends at the last whole iteration below it: 3050 counts as reached (iterations of 100), 3200 not
    assert "| RPO | 2.0 ± 1.4 (2) |" in curves.milestone_table(experiments, [3050], [])
    assert "| RPO | — |" in curves.milestone_table(experiments, [3200], [])
    curves.plot(experiments, str(tmp_path / "curves.png"), wall_clock=True)
    assert (tmp_path / "curves.png").stat().st_size > 10_000
