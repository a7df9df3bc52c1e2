"""Helpers shared by several test files."""
import torch


def random_actions(env, steps, seed=0):
    """(steps, N, A) actions uniform in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.rand(steps, env.num_envs, env.num_actions, generator=g) - 1


def rollout(env, actions):
    """Step through `actions` (all differentiable); every step's outputs and d(summed reward)/d(actions)."""
    actions = actions.clone().requires_grad_(True)
    env.clear_grad()
    steps, rewards = [], []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        steps.append((obs.detach(), reward.detach(), terminated, truncated, info["final_obs"].detach()))
        rewards.append(reward)
    (grad,) = torch.autograd.grad(torch.stack(rewards).sum(), actions)
    return steps, grad


def assert_same_horizon(horizon, other):
    """Two `rollout` results are bit-identical (every step's outputs and the action-gradients), the gradient is
    not zero, and some env reached its time limit inside the horizon (so resets were compared too)."""
    (steps, grad), (other_steps, other_grad) = horizon, other
    assert torch.equal(grad, other_grad) and grad.abs().max() > 0
    assert any(truncated.any() for *_, truncated, _ in steps)
    for step, other_step in zip(steps, other_steps, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(step, other_step, strict=True))


def random_episode_flags(H, N, seed):
    g = torch.Generator().manual_seed(seed)
    terminated = torch.rand(H, N, generator=g) < 0.15
    truncated = (torch.rand(H, N, generator=g) < 0.15) & ~terminated
    return terminated, truncated


def record_env_steps(monkeypatch, script):
    """Make `script.make_env` return envs whose step results are appended to the returned list."""
    steps = []
    make_env = script.make_env

    def recording_make_env(*args, **kwargs):
        env = make_env(*args, **kwargs)
        step = env.step

        def recording_step(actions):
            result = step(actions)
            steps.append(tuple(x.detach().clone() for x in result[:4]) + (result[4]["final_obs"].detach().clone(),))
            return result

        env.step = recording_step
        return env

    monkeypatch.setattr(script, "make_env", recording_make_env)
    return steps  # (obs, reward, terminated, truncated, final_obs) per step
