"""The code the four scripts share (docs/usage.md#environment-api).

- `make_env(env_id, num_envs, ...)`: a differentiable task (`ENV_IDS`) behind one API, `DiffEnv` (diff_env.py):
  the paper's DFlex tasks (ant.py, hopper.py, humanoid.py, anymal.py on dflex_task.py, dflex_integrator.py and
  dflex_inertia.py), Rewarped's others, with Rewarped's flaws fixed (warp_env_fixes.py, featherstone_fix.py,
  low_memory.py) and loaded quietly (rewarped_loading.py); or any env that keeps the contract of
  docs/env_contract.md, given as `module:Class` (env_contract.py). Warp and Rewarped are imported only when a
  Warp task is built;
- wrappers.py: `RecordEpisodeStatistics` and `RecordVideo` (frames from the env's `render()`), in Gymnasium's idiom;
- checkpoint.py: checkpoints that resume bit for bit, saved models;
- experiment.py: the checks, logs, progress line and evaluation around every script's algorithm;
- gradcheck.py: `python -m envs.gradcheck`, BPTT against finite differences.
"""
import importlib

import torch


class UsageError(ValueError):
    """Bad input, refused before any simulation starts; a script prints it as one line that names the fix."""


ENV_IDS = ("Ant", "Hopper", "Humanoid", "Anymal", "HandReorient", "CartPole", "RewarpedAnt", "RewarpedHumanoid")

# env id -> (module, class) of the task: ours where the paper's (AHAC's DFlex) task differs from Rewarped 1.3.3's
# or Rewarped's is broken or a stub; Rewarped's otherwise, and under Rewarped* ids for the SAPO paper's tasks
_TASKS = {
    "Ant": (f"{__name__}.ant", "Ant"),
    "Hopper": (f"{__name__}.hopper", "Hopper"),
    "Anymal": (f"{__name__}.anymal", "Anymal"),
    "Humanoid": (f"{__name__}.humanoid", "Humanoid"),
    "HandReorient": ("rewarped.envs.isaacgymenvs.allegro_hand", "AllegroHand"),
    "CartPole": ("rewarped.envs.dflex.cartpole", "Cartpole"),
    "RewarpedAnt": ("rewarped.envs.dflex.ant", "Ant"),
    "RewarpedHumanoid": ("rewarped.envs.dflex.humanoid", "Humanoid"),
}
# tasks whose observation ends with the last action and that follow DFlex in hiding it from gradient runs
_LAST_ACTION_OPTION = ("Ant", "Humanoid", "Anymal")


def _check_device(device):
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}; use 'cpu' or 'cuda' (or 'cuda:N')") from None
    if device.type == "cpu":
        return "cpu"
    if device.type != "cuda":
        raise UsageError(f"unsupported device {str(device)!r}; use 'cpu' or 'cuda' (or 'cuda:N')")
    if not torch.cuda.is_available():
        raise UsageError("device 'cuda' was asked for but this machine has no usable CUDA GPU; use device='cpu'")
    index = device.index or 0
    if index >= torch.cuda.device_count():
        raise UsageError(f"no GPU cuda:{index} here ({torch.cuda.device_count()} found); use 'cuda:0' or 'cpu'")
    return f"cuda:{index}"


def check_env_id(env_id):
    """Refuse an env id that is neither a built-in task nor a `module:name` import path."""
    if env_id not in ENV_IDS and ":" not in env_id:
        raise UsageError(f"unknown env id {env_id!r}; known ids: {', '.join(ENV_IDS)}, or your own env as "
                         "module:Class (docs/env_contract.md)")
    if ":" in env_id:
        from .env_contract import load_env_factory

        load_env_factory(env_id)


def check_sim_workers(sim_workers, num_envs, device="cpu"):
    """Refuse a number of simulations that cannot split `num_envs` envs on `device`, naming the fix."""
    if isinstance(sim_workers, bool) or not isinstance(sim_workers, int) or sim_workers < 1:
        raise UsageError(f"--sim-workers must be a positive integer, got {sim_workers!r}")
    if sim_workers > 1 and not str(device).startswith("cpu"):
        raise UsageError(f"--sim-workers {sim_workers} splits the CPU simulation over processes; on {device} one "
                         "simulation runs all envs in parallel already: use --sim-workers 1")
    if num_envs % sim_workers:
        raise UsageError(f"--sim-workers {sim_workers} must divide --num-envs {num_envs} (each simulation gets "
                         "the same number of envs)")


def make_env(env_id, num_envs, device="cpu", seed=0, requires_grad=True, episode_length=None, graph_capture=None,
             low_memory=False, last_action_obs=None, sim_workers=1, render=False):
    """Build `num_envs` parallel copies of task `env_id` (one of `ENV_IDS`) and return a `DiffEnv`; or, for an
    `env_id` of the form `module:name`, the env that the class or factory `name` of `module` builds, checked
    against the contract of docs/env_contract.md (`render=True`: it must render, for --capture-video).

    `sim_workers=P > 1` (CPU only) splits the envs over P simulations of num_envs / P envs each, stepped forward
    and backward in P worker processes, behind the same API (`ShardedEnv`, sharded_env.py); shard k draws its own
    random stream (`shard_seed`), so a run is reproducible for a fixed P, and P changes the random start states.

    `requires_grad=False` builds the simulator without its backward pass (faster, flat memory: for PPO).
    `episode_length=None` keeps the task's own time limit. `graph_capture=None` captures the simulation step in
    a CUDA graph on CUDA devices (Warp's CPU backend has none). `low_memory=True` keeps only each step's input
    for the backward pass and recomputes the step there (a second forward pass; gradients as in the normal mode,
    see docs/usage.md#environment-api; not with graph capture, which recomputes by itself). `last_action_obs`
    (Ant, Humanoid, Anymal): whether the observation shows the last action; None does as DFlex did in the
    paper's runs (shown without gradients, 0 with them). The same seed on the same device gives bit-identical
    rollouts.
    """
    check_env_id(env_id)
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise UsageError(f"num_envs must be a positive integer, got {num_envs!r}")
    if episode_length is not None and (not isinstance(episode_length, int) or episode_length < 1):
        raise UsageError(f"episode_length must be a positive integer or None, got {episode_length!r}")
    device = _check_device(device)
    if ":" in env_id:
        from .env_contract import make_own_env

        built_in_only = {"graph_capture": graph_capture, "low_memory": low_memory,
                         "last_action_obs": last_action_obs, "sim_workers": sim_workers > 1}
        for name, value in built_in_only.items():
            if value:
                raise UsageError(f"{name} applies to the built-in Warp tasks only; leave it out for {env_id}")
        return make_own_env(env_id, num_envs, device, seed, requires_grad, episode_length, render)
    if last_action_obs is not None and env_id not in _LAST_ACTION_OPTION:
        raise UsageError(f"last_action_obs applies to {', '.join(_LAST_ACTION_OPTION)} only; leave it None for "
                         f"{env_id}")
    if graph_capture is None:
        graph_capture = device.startswith("cuda")
    elif graph_capture and not device.startswith("cuda"):
        raise UsageError("graph_capture=True needs a CUDA device; leave it None on the CPU")
    if low_memory and graph_capture:
        graph_capture = False  # the captured step already recomputes its forward in the backward pass
    check_sim_workers(sim_workers, num_envs, device)
    if sim_workers > 1:
        from .sharded_env import ShardedEnv, shard_seed

        return ShardedEnv([dict(env_id=env_id, num_envs=num_envs // sim_workers, device=device,
                                seed=shard_seed(seed, k), requires_grad=requires_grad,
                                episode_length=episode_length, graph_capture=graph_capture, low_memory=low_memory,
                                last_action_obs=last_action_obs) for k in range(sim_workers)])

    from .diff_env import DiffEnv
    from .rewarped_loading import import_rewarped, quiet_construction

    import_rewarped()
    from .warp_env_fixes import WarpEnvFixes

    module, name = _TASKS[env_id]
    task_base = getattr(importlib.import_module(module), name)
    options = {"low_memory": low_memory}
    if last_action_obs is not None:
        options["last_action_obs"] = last_action_obs
    task_class = type(name, (task_base, WarpEnvFixes), options)
    kwargs = dict(
        num_envs=num_envs,
        device=device,
        no_grad=not requires_grad,
        # With env offsets, N=128 Ant envs sit up to ±160 m apart and float32 loses the twist -> COM velocity.
        no_env_offset=True,
        use_graph_capture=graph_capture,
    )
    if episode_length is not None:
        kwargs["episode_length"] = episode_length
    env = None
    with quiet_construction():
        task = task_class(**kwargs)
        env = DiffEnv(task, seed)
        with env._own_rng():
            task.init()
            task.initialized = True
    return env
