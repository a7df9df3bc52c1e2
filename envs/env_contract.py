"""Your own env in the four scripts: `--env-id module:Class` (docs/env_contract.md).

`make_own_env` imports the class or factory, builds the env and checks it against the contract before any
training starts: every attribute and method the scripts use, the shapes and dtypes of one step, and, when the
script backpropagates through the env, that the reward and the final observation carry gradients to the action.
The probe step is undone with the env's own `state_dict` / `load_state_dict`, so it changes no number of the run.
"""
import importlib

import torch

from . import UsageError

ATTRIBUTES = ("num_envs", "num_obs", "num_actions", "device", "max_episode_length")
METHODS = ("reset", "step", "clear_grad", "state_dict", "load_state_dict")


def load_env_factory(env_id):
    """The class or factory that `module:name` names; a bad path is refused in one line."""
    module_name, _, name = env_id.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"--env-id {env_id}: cannot import {module_name} ({error}); is its folder on the Python "
                         "path?") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise UsageError(f"--env-id {env_id}: {module_name} has no class or function {name!r}")
    return factory


def make_own_env(env_id, num_envs, device, seed, requires_grad, episode_length, render):
    """Build the env (keyword arguments num_envs, device, seed, requires_grad and, if not None, episode_length)
    and check it (`check_env`)."""
    options = {} if episode_length is None else {"episode_length": episode_length}
    env = load_env_factory(env_id)(num_envs=num_envs, device=device, seed=seed, requires_grad=requires_grad,
                                   **options)
    check_env(env, env_id, num_envs, requires_grad, render)
    return env


def check_env(env, env_id, num_envs, requires_grad, render=False):
    """Refuse, naming the missing piece, an env that breaks the contract of docs/env_contract.md."""

    def refuse(what):
        raise UsageError(f"--env-id {env_id}: {what} (docs/env_contract.md)")

    needed = ATTRIBUTES + METHODS + (("render", "metadata") if render else ())
    missing = [name for name in needed if not hasattr(env, name)]
    if missing:
        refuse(f"the env has no {', '.join(missing)}")
    if render and "render_fps" not in env.metadata:
        refuse("--capture-video needs env.metadata['render_fps']")
    if env.num_envs != num_envs:
        refuse(f"the env has num_envs = {env.num_envs}, {num_envs} were asked for")
    N, num_obs, num_actions = num_envs, env.num_obs, env.num_actions
    state = env.state_dict()
    obs = env.reset()
    actions = torch.zeros(N, num_actions, device=env.device, requires_grad=requires_grad)
    next_obs, reward, terminated, truncated, info = env.step(actions)
    expected = {"reset()'s obs": (obs, (N, num_obs), torch.float32),
                "step()'s obs": (next_obs, (N, num_obs), torch.float32),
                "reward": (reward, (N,), torch.float32),
                "terminated": (terminated, (N,), torch.bool),
                "truncated": (truncated, (N,), torch.bool),
                "info['final_obs']": (info.get("final_obs"), (N, num_obs), torch.float32)}
    for name, (value, shape, dtype) in expected.items():
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape or value.dtype != dtype:
            got = f"{tuple(value.shape)} {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__
            refuse(f"{name} must be a {dtype} tensor of shape {shape}, got {got}")
    if requires_grad:
        for name, value in (("reward", reward), ("info['final_obs']", info["final_obs"])):
            if not value.requires_grad or torch.autograd.grad(value.sum(), actions, retain_graph=True,
                                                              allow_unused=True)[0] is None:
                refuse(f"step()'s {name} carries no gradient to the action; backpropagation needs one")
    if env.clear_grad().requires_grad:
        refuse("clear_grad() must return the observation cut from the autograd graph")
    env.load_state_dict(state)
