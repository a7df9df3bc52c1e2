"""Record reference trajectories from AHAC's DFlex tasks, for the parity tests (tests/data/dflex_*.npz).

DFlex is not a dependency: point PYTHONPATH at the `dflex` folder of a checkout of github imgeorgiev/DiffRL
(docs/tasks.md#ant says how to run it) and run, from the repository root:

    python benchmark/dflex_reference.py --env-id Ant --out tests/data/dflex_ant.npz

Each file holds N envs' seeded random start states (DFlex's own stochastic init), a seeded action sequence,
every step's joint_q, joint_qd, reward and observation, from DFlex's gradient mode (no_grad=False, as SHAC
and RPO train), the observations of its no-gradient mode (as PPO trains), and the bodies' masses and inertias.
"""
import argparse
import time

import numpy as np
import torch

# AHAC's DFlex task class and mass-matrix period (MM_caching_frequency in its scripts/cfg/env/*.yaml) per env id
DFLEX_TASKS = {"Ant": ("AntEnv", 16), "Hopper": ("HopperEnv", 4), "Humanoid": ("HumanoidEnv", 48),
               "Anymal": ("AnymalEnv", 16)}


def rollout(env_class, mass_matrix_every, num_envs, start, actions, no_grad):
    env = env_class(device="cpu", num_envs=num_envs, no_grad=no_grad, stochastic_init=False, episode_length=10_000,
                    early_termination=False, MM_caching_frequency=mass_matrix_every)
    env.reset()
    env.reset_with_state(start["joint_q"], start["joint_qd"])
    env.initialize_trajectory()
    record = {key: [] for key in ("joint_q", "joint_qd", "reward", "obs")}
    with torch.no_grad():
        for action in actions:
            obs, reward, _, _ = env.step(torch.tensor(action))
            record["joint_q"].append(env.state.joint_q.view(num_envs, -1).clone())
            record["joint_qd"].append(env.state.joint_qd.view(num_envs, -1).clone())
            record["reward"].append(reward.clone())
            record["obs"].append(obs.clone())
    return {key: torch.stack(value).numpy() for key, value in record.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", choices=sorted(DFLEX_TASKS), required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import dflex.envs

    name, mass_matrix_every = DFLEX_TASKS[args.env_id]
    env_class = getattr(dflex.envs, name)
    torch.manual_seed(args.seed)
    sampler = env_class(device="cpu", num_envs=args.num_envs, no_grad=True, stochastic_init=True)
    sampler.reset()
    start = {"joint_q": sampler.state.joint_q.detach().clone(), "joint_qd": sampler.state.joint_qd.detach().clone()}
    rng = np.random.default_rng(args.seed)
    actions = rng.uniform(-1.0, 1.0, (args.steps, args.num_envs, sampler.num_actions)).astype(np.float32)

    bodies = len(sampler.model.body_I_m) // args.num_envs
    inertia = sampler.model.body_I_m[:bodies].detach().numpy()  # spatial inertias of env 0's bodies
    began = time.time()
    grad_mode = rollout(env_class, mass_matrix_every, args.num_envs, start, actions, no_grad=False)
    no_grad_mode = rollout(env_class, mass_matrix_every, args.num_envs, start, actions, no_grad=True)
    for key in ("joint_q", "joint_qd", "reward"):
        same = np.array_equal(grad_mode[key], no_grad_mode[key])
        print(f"{key}: gradient and no-gradient mode {'identical' if same else 'differ'}")
    np.savez_compressed(
        args.out,
        start_joint_q=start["joint_q"].view(args.num_envs, -1).detach().numpy(),
        start_joint_qd=start["joint_qd"].view(args.num_envs, -1).detach().numpy(),
        actions=actions,
        **grad_mode,
        obs_no_grad=no_grad_mode["obs"],
        body_mass=inertia[:, 3, 3],
        body_inertia=inertia[:, :3, :3],
    )
    print(f"wrote {args.out}: {args.num_envs} envs x {args.steps} steps in {time.time() - began:.1f} s")


if __name__ == "__main__":
    main()
