"""Checkpoint and exact resume: the env's own state (`DiffEnv.state_dict`) and the four scripts'."""
import dataclasses
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import random_actions

import envs.checkpoint
import ppo_dflex
import rpo_continuous_dflex
import sapo_dflex
import shac_dflex
from envs import make_env
from envs.checkpoint import StopRequest, atomic_save


def roll(env, actions):
    """From the current state: a fresh horizon through `actions`; observations, rewards, ends and the gradient
    of the summed reward with respect to the first action."""
    first = actions[0].clone().requires_grad_(env.requires_grad)
    obs, rewards, ends = [env.clear_grad()], [], []
    for a in torch.cat([first[None], actions[1:]]):
        o, r, terminated, truncated, _ = env.step(a)
        obs.append(o.detach())
        rewards.append(r)
        ends.append(terminated | truncated)
    rewards = torch.stack(rewards)
    grad = torch.autograd.grad(rewards.sum(), first)[0] if env.requires_grad else None
    return torch.stack(obs), rewards.detach(), torch.stack(ends), grad


# CartPole and the Rewarped Ant (Warp's collision pipeline reads the maximal coordinates) on Warp's
# Featherstone step, the Ant on DFlex's; episodes of 12 steps so that envs reset inside the compared window
@pytest.mark.parametrize("env_id", ["CartPole", "Ant", "RewarpedAnt"])
def test_a_restored_env_steps_like_the_original(env_id):
    env = make_env(env_id, 3, seed=3, episode_length=12)
    env.reset()
    for a in random_actions(env, 7, seed=1):
        env.step(a)
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    copy = make_env(env_id, 3, seed=8, episode_length=12)  # elsewhere: other seed, other steps
    copy.reset()
    for a in random_actions(copy, 4, seed=2):
        copy.step(a)
    copy.load_state_dict(state)

    actions = random_actions(env, 10, seed=4)
    original, restored = roll(env, actions), roll(copy, actions)
    assert original[2].any(), "no env reset inside the window: the test would not cover the random generator"
    for a, b in zip(original, restored):
        assert torch.equal(a, b)


def test_an_env_state_of_another_task_or_size_is_refused():
    state = make_env("CartPole", 2).state_dict()
    with pytest.raises(ValueError, match="env state of Cartpole with 2 envs cannot be loaded into Cartpole with 3"):
        make_env("CartPole", 3).load_state_dict(state)


ROOT = Path(__file__).resolve().parent.parent
SCRIPT_FILES = ["shac_dflex.py", "sapo_dflex.py", "rpo_continuous_dflex.py", "ppo_dflex.py"]
ITERATIONS = 12
ENV = dict(os.environ, OMP_NUM_THREADS="1")  # the same torch threads in every run of a comparison


def command(script, *extra):
    return [sys.executable, str(ROOT / script), "--env-id", "CartPole", "--num-envs", "16", "--horizon", "16",
            "--total-timesteps", str(16 * 16 * ITERATIONS), "--seed", "3", "--save-model", *extra]


def finished_run(cwd, script, *extra):
    """Run to the end; return the saved model and the two evaluation returns as printed."""
    result = subprocess.run(command(script, *extra), cwd=cwd, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (model_path,) = Path(cwd).glob(f"runs/*/{script[:-3]}.model")
    evals = re.search(r"eval: deterministic_return=(\S+)  stochastic_return=(\S+)", result.stdout).groups()
    return torch.load(model_path, weights_only=True), evals


def interrupted_run(cwd, script, signum, *extra, group=False):
    """Start a run that checkpoints every 3 iterations and send it `signum` as soon as its first checkpoint is
    on disk (`group`: to its whole process group, as a terminal's Ctrl-C does); return its exit code, its stderr
    and the checkpoint's path."""
    process = subprocess.Popen(command(script, "--checkpoint-every", "3", *extra), cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=group)
    deadline = time.time() + 600
    while not list(Path(cwd).glob("runs/*/checkpoint.pt")):
        assert process.poll() is None and time.time() < deadline, "no checkpoint was written"
        time.sleep(0.005)
    if group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=600)
    assert "eval:" not in stdout, "the signal came after training had ended: the test checked nothing"
    (checkpoint,) = Path(cwd).glob("runs/*/checkpoint.pt")
    return process.returncode, stderr, checkpoint


def assert_same_run(a, b):
    (model_a, evals_a), (model_b, evals_b) = a, b
    assert evals_a == evals_b
    for part in ("actor", "critics", "critic", "obs_normalizer", "obs_rms", "value_rms"):
        if part in model_a:
            states_a = model_a[part] if isinstance(model_a[part], list) else [model_a[part]]
            states_b = model_b[part] if isinstance(model_b[part], list) else [model_b[part]]
            for state_a, state_b in zip(states_a, states_b):
                assert state_a.keys() == state_b.keys()
                assert all(torch.equal(state_a[key], state_b[key]) for key in state_a), part


@pytest.mark.parametrize("script, sim_workers", [(script, 1) for script in SCRIPT_FILES] +
                         [("rpo_continuous_dflex.py", 2)])
def test_a_killed_or_stopped_run_resumes_bit_identically(script, sim_workers, tmp_path):
    """12 iterations straight; the same run killed (SIGKILL) or stopped (SIGTERM) right after its checkpoint
    at iteration 3 and resumed with --resume: the same actor, critics, normalisers and eval returns (RPO also
    with its envs in two simulation processes, and then also stopped by a Ctrl-C to its process group)."""
    workers = ("--sim-workers", str(sim_workers))
    (tmp_path / "straight").mkdir()
    straight = finished_run(tmp_path / "straight", script, *workers)

    (tmp_path / "killed").mkdir()
    code, _, checkpoint = interrupted_run(tmp_path / "killed", script, signal.SIGKILL, *workers)
    assert code == -signal.SIGKILL
    assert_same_run(straight, finished_run(tmp_path / "killed", script, "--checkpoint-every", "3",
                                           "--resume", str(checkpoint), *workers))

    (tmp_path / "stopped").mkdir()
    code, stderr, checkpoint = interrupted_run(tmp_path / "stopped", script, signal.SIGTERM, *workers)
    last_line = stderr.strip().splitlines()[-1]
    assert code == 1 and re.fullmatch(r"stopped by SIGTERM after iteration \d+: run the same command with "
                                      rf"--resume {re.escape(str(checkpoint.relative_to(tmp_path / 'stopped')))} to continue", last_line), last_line
    assert_same_run(straight, finished_run(tmp_path / "stopped", script, "--checkpoint-every", "3",
                                           "--resume", str(checkpoint), *workers))
    if sim_workers > 1:  # Ctrl-C reaches the simulation processes too: they must outlive the checkpoint
        (tmp_path / "ctrl_c").mkdir()
        code, stderr, checkpoint = interrupted_run(tmp_path / "ctrl_c", script, signal.SIGINT, *workers, group=True)
        assert code == 1 and "stopped by SIGINT after iteration" in stderr.strip().splitlines()[-1], stderr[-2000:]
        assert_same_run(straight, finished_run(tmp_path / "ctrl_c", script, "--checkpoint-every", "3",
                                               "--resume", str(checkpoint), *workers))


MODULES = [shac_dflex, sapo_dflex, rpo_continuous_dflex, ppo_dflex]


def saved_checkpoint(tmp_path, module, **changes):
    """A checkpoint file as `module` writes them, for a CartPole run of 4 envs, with `changes` to its args."""
    args = dataclasses.asdict(module.complete_args(module.Args(env_id="CartPole", num_envs=4)))
    args.update(changes)
    path = str(tmp_path / "checkpoint.pt")
    atomic_save({"script": module.SCRIPT, "run_name": "run", "args": args}, path)
    return path


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("changes, message", [
    (dict(env_id="Ant"), "was saved with --env-id Ant, this run has --env-id CartPole; run with the checkpoint's"),
    (dict(num_envs=8), "was saved with --num-envs 8, this run has --num-envs 4"),
    (dict(sim_workers=2), "was saved with --sim-workers 2, this run has --sim-workers 1"),
    (dict(horizon=64), "was saved with --horizon 64, this run has --horizon 32"),
    (dict(actor_hidden=(32, 32)), r"was saved with --actor-hidden \(32, 32\), this run has --actor-hidden \(64, 64\)"),
    (dict(critic_hidden=(128,)), r"was saved with --critic-hidden \(128,\), this run has --critic-hidden \(64, 64\)"),
])
def test_a_checkpoint_of_another_task_size_or_network_is_refused(module, changes, message, tmp_path):
    path = saved_checkpoint(tmp_path, module, **changes)
    with pytest.raises(ValueError, match=message):
        module.main(module.Args(env_id="CartPole", num_envs=4, total_timesteps=128, resume=path))


@pytest.mark.parametrize("module", MODULES)
def test_a_checkpoint_of_another_script_is_refused(module, tmp_path):
    other = MODULES[(MODULES.index(module) + 1) % len(MODULES)]
    path = saved_checkpoint(tmp_path, other)
    with pytest.raises(ValueError, match=f"is a checkpoint of {other.SCRIPT}; resume it with that script"):
        module.main(module.Args(env_id="CartPole", num_envs=4, total_timesteps=128, resume=path))


@pytest.mark.parametrize("module", MODULES)
def test_a_missing_truncated_or_corrupt_checkpoint_is_refused(module, tmp_path):
    path = saved_checkpoint(tmp_path, module)
    with open(path, "rb") as f:
        data = f.read()
    for name, content in (("truncated.pt", data[: len(data) // 2]), ("corrupt.pt", b"not a checkpoint")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"--resume {tmp_path / name}: not a readable checkpoint"):
            module.main(module.Args(env_id="CartPole", num_envs=4, total_timesteps=128, resume=str(tmp_path / name)))
    with pytest.raises(ValueError, match="not a readable checkpoint .*No such file"):
        module.main(module.Args(env_id="CartPole", num_envs=4, total_timesteps=128,
                                resume=str(tmp_path / "missing.pt")))


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    """A crash while writing (here: half the bytes, then an error) never touches the last good checkpoint."""
    path = saved_checkpoint(tmp_path, shac_dflex)
    good = torch.load(path, weights_only=True)

    def crashing_save(obj, target):
        with open(target, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(envs.checkpoint.torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"script": "newer"}, path)
    assert torch.load(path, weights_only=True) == good


@pytest.mark.parametrize("module", MODULES)
def test_a_negative_checkpoint_interval_is_refused(module):
    with pytest.raises(ValueError, match="--checkpoint-every must be 0 or more, got -1"):
        module.complete_args(module.Args(env_id="CartPole", checkpoint_every=-1))


@pytest.mark.parametrize("module", MODULES)
def test_resume_and_eval_model_together_are_refused(module, tmp_path):
    path = saved_checkpoint(tmp_path, module)
    with pytest.raises(ValueError, match="--resume continues training and --eval-model skips it: give one of them"):
        module.main(module.Args(env_id="CartPole", num_envs=4, total_timesteps=128, resume=path, eval_model=path))


def test_a_second_signal_exits_at_once(monkeypatch):
    installed = {}
    monkeypatch.setattr(envs.checkpoint.signal, "signal",
                        lambda signum, handler: installed.update({signum: handler}) or "old")
    stop = StopRequest()
    assert set(installed) == {signal.SIGTERM, signal.SIGINT}
    installed[signal.SIGINT](signal.SIGINT, None)  # the first: noted, training goes on to the checkpoint
    assert stop.signal == signal.SIGINT
    with pytest.raises(SystemExit, match="SIGTERM again: stopped without a checkpoint"):
        installed[signal.SIGTERM](signal.SIGTERM, None)
    stop.release()  # after training: the handlers from before are back
    assert installed == {signal.SIGTERM: "old", signal.SIGINT: "old"}
