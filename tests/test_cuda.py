"""The CUDA path: CPU and CUDA agree, CUDA-graph capture changes nothing, the four scripts train, evaluate and
save on CUDA. Skipped where no CUDA GPU is usable; `bash benchmark/gpu_check.sh` runs them on a GPU machine."""
import math

import pytest
import torch
from helpers import random_actions
from test_scripts import EXPECTED_TAGS, SCRIPTS, scalars_of, tiny_cartpole_args

from envs import make_env

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no usable CUDA GPU on this machine")


def rollout(env, actions, terminate_env0=False):
    """Step through `actions` (T, N, A, on the CPU) from the task's nominal start; with `terminate_env0` env 0
    ends on every step (a partial reset each step). Returns the stacked (obs, reward, terminated, truncated)
    and the first action, which requires grad where the env does."""
    env.task.randomize = False  # CPU and CUDA draw random start states from different generators
    env.reset()
    if terminate_env0:
        heights = torch.full((env.num_envs,), -1e3, device=env.device)
        heights[0] = 1e3
        env.task.termination_height = heights
    first = actions[0].to(env.device).requires_grad_(env.requires_grad)
    steps = [env.step(a) for a in [first] + [a.to(env.device) for a in actions[1:]]]
    stacked = [torch.stack([s[i] for s in steps]) for i in range(4)]
    return stacked, first


@pytest.mark.parametrize("env_id, terminate_env0", [("CartPole", False), ("Ant", True)])
def test_cpu_and_cuda_give_the_same_50_step_rollout(env_id, terminate_env0):
    """Time-limit resets (CartPole, every 20 steps) and partial resets (Ant: env 0 ends on every step)."""
    results = []
    for device in ("cpu", "cuda"):
        env = make_env(env_id, 4, device=device, requires_grad=False, episode_length=20)
        (obs, reward, terminated, truncated), _ = rollout(env, random_actions(env, 50, seed=1), terminate_env0)
        results.append((obs.cpu(), reward.cpu(), terminated.cpu(), truncated.cpu()))
    (cpu_obs, cpu_reward, cpu_term, cpu_trunc), (gpu_obs, gpu_reward, gpu_term, gpu_trunc) = results
    assert torch.equal(cpu_term, gpu_term) and torch.equal(cpu_trunc, gpu_trunc)
    assert cpu_trunc.any() and (cpu_term[:, 0].all() or not terminate_env0)
    torch.testing.assert_close(gpu_obs, cpu_obs, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(gpu_reward, cpu_reward, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("env_id", ["CartPole", "Ant"])
def test_graph_capture_changes_neither_the_rollout_nor_the_bptt_gradient(env_id):
    """16 steps with an episode end inside (time limit 10; Ant's env 0 ends on every step)."""
    results = []
    for graph_capture in (False, True):
        env = make_env(env_id, 4, device="cuda", episode_length=10, graph_capture=graph_capture)
        (obs, reward, terminated, truncated), first = rollout(env, random_actions(env, 16, seed=2), env_id == "Ant")
        (grad,) = torch.autograd.grad(reward.sum(), first)
        results.append((obs.detach(), reward.detach(), terminated, truncated, grad))
    assert results[0][3].any()  # the time limit ended episodes inside the horizon
    for without, with_capture in zip(*results):
        torch.testing.assert_close(with_capture, without, rtol=1e-5, atol=1e-6)
    assert results[0][4].abs().sum() > 0


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_train_two_iterations_on_cuda_and_log_every_tag(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_name, eval_returns = script.main(tiny_cartpole_args(script, "cuda", cuda=True))
    scalars = scalars_of(tmp_path / "runs" / run_name)
    assert EXPECTED_TAGS[script] <= set(scalars)
    assert all(math.isfinite(value) for value in eval_returns.values())


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("train_on_cuda", [True, False])
def test_a_model_saved_on_one_device_evaluates_on_the_other(script, train_on_cuda, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_name, _ = script.main(tiny_cartpole_args(script, "train", cuda=train_on_cuda, save_model=True))
    model_path = f"runs/{run_name}/train.model"
    _, returns = script.main(tiny_cartpole_args(script, "reload", cuda=not train_on_cuda, eval_model=model_path))
    assert all(math.isfinite(value) for value in returns.values())
