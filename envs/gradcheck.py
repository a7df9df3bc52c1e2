"""Check a task's simulation gradient against central finite differences.

    python -m envs.gradcheck --env-id Anymal                 # K = 1 and K = 3, two start states
    python -m envs.gradcheck --env-id Hopper --steps 1 3 10 --starts 0 1 2
    python -m envs.gradcheck --env-id examples.pendulum:Pendulum   # your own env (docs/env_contract.md)

For each start state and each K it compares BPTT's dR/da_0 with (R(a_0 + h e_d) - R(a_0 - h e_d)) / 2h, where
R is the reward summed over K steps. BPTT runs in a single env (with `--sim-workers P`, in P envs of one
simulation each, stepped in parallel: every one must give the same gradient); the finite differences in one batch of
1 + 2·A·len(h) envs without gradients: env 0 repeats the differentiated rollout (its return must be the same),
the others move one action component of step 0 by ±h. Where the two differ because the task's random draws
depend on the batch size (HandReorient's goals), every finite-difference rollout gets an env of its own.

A start state is the task's nominal initial state (no randomisation, so every env starts in the same one)
followed by `--warmup` steps of seeded random actions, the same in every env; the action point a_0 and the
later actions are seeded random actions too. A dimension's finite difference is *stable* when the
estimates at all h agree to `--spread`; the error of a stable dimension is |BPTT - FD| / scale, with FD at the
middle h and scale = max(|FD_d|, 0.1 · max_d |FD_d|), so that a component near zero does not dominate.
Your own env (`module:Class`) has no nominal state to share: its start state is the seed's first state after
the warm-up, and every finite-difference rollout starts from it in one env, through `load_state_dict`.
The exit status is 1 when a stable dimension is off by more than the tolerance (2 % at K = 1, 5 % above),
and when no dimension could be checked at all (every window ended an episode, or no finite difference was stable).
"""
import argparse
import sys

import torch

from . import UsageError, check_env_id, make_env

DEFAULT_H = (3e-3, 1e-2, 3e-2)


class EpisodeEnded(RuntimeError):
    """An episode ended (termination, time limit or NaN) inside the warm-up or the K-step window."""


class BatchDependent(RuntimeError):
    """The task's random draws depend on the batch size, so a batch of finite differences is not comparable."""


def tolerance(steps):
    return 0.02 if steps == 1 else 0.05


def nominal_start(env):
    """Every env, and every env that resets later, starts in the task's nominal state (no random draws)."""
    env.task.randomize = False


def k_step_returns(env, first, warmup_actions, later_actions):
    """Reward of each env summed over K = 1 + len(later_actions) steps from the start state: `first` (N, A) is
    step 0's action, the warm-up and later actions (one row each) are the same for every env."""
    env.call(nominal_start)
    env.reset()
    for a in warmup_actions:
        _, _, terminated, truncated, _ = env.step(a.expand(env.num_envs, -1))
        if (terminated | truncated).any():
            raise EpisodeEnded("an episode ended during the warm-up; a shorter --warmup avoids it")
        env.clear_grad()  # keep no simulator tape from the warm-up
    returns = torch.zeros(env.num_envs)
    for action in [first] + [a.expand(env.num_envs, -1) for a in later_actions]:
        _, reward, terminated, truncated, info = env.step(action)
        if (terminated | truncated).any() or info["nan_resets"] > 0:
            raise EpisodeEnded(f"an episode ended inside the K = {1 + len(later_actions)} window")
        returns = returns + reward
    return returns


def own_env_returns(env, first, warmup_actions, later_actions):
    """Your own env of N = 1: BPTT's dR/da_0 at a_0 = first[0] and the K-step returns of every row of `first`, each
    rollout from the same start state through `load_state_dict`."""
    env.reset()
    for a in warmup_actions:
        _, _, terminated, truncated, _ = env.step(a)
        if (terminated | truncated).any():
            raise EpisodeEnded("an episode ended during the warm-up; a shorter --warmup avoids it")
        env.clear_grad()
    state = env.state_dict()

    def k_step_return(a0):
        env.load_state_dict(state)
        returns = 0.0
        for action in [a0] + list(later_actions):
            _, reward, terminated, truncated, _ = env.step(action)
            if (terminated | truncated).any():
                raise EpisodeEnded(f"an episode ended inside the K = {1 + len(later_actions)} window")
            returns = returns + reward
        return returns

    a0 = first[:1].clone().requires_grad_(True)
    (bptt,) = torch.autograd.grad(k_step_return(a0).sum(), a0)
    with torch.no_grad():
        returns = torch.cat([k_step_return(a[None]) for a in first])
    return bptt, returns


def gradient_check(env_id, steps, start, h=DEFAULT_H, warmup=8, action_scale=0.5, one_env_each=False,
                   sim_workers=1):
    """Compare BPTT and finite differences for the K = `steps` return from start state number `start`.
    `one_env_each` runs every finite-difference rollout in an env of its own instead of one batch;
    `sim_workers` differentiates in that many simulations stepped in parallel (`make_env`).

    Returns one dict per action dimension: bptt, fd (one per h), spread, error.
    """
    bptt_env = make_env(env_id, 1 if ":" in env_id else sim_workers, seed=start, sim_workers=sim_workers)
    num_actions = bptt_env.num_actions
    g = torch.Generator().manual_seed(start)
    shared = lambda n: action_scale * (2 * torch.rand(n, 1, num_actions, generator=g) - 1)  # noqa: E731
    warmup_actions, later_actions = shared(warmup), shared(steps - 1)
    a0 = shared(1)[0]
    # Row 0 repeats a_0, the rollout that BPTT differentiates; then a_0 + h e_d and a_0 - h e_d for each h.
    eye = torch.eye(num_actions)
    first = a0 + torch.cat([torch.zeros(1, num_actions)] + [torch.cat([hi * eye, -hi * eye]) for hi in h])
    if ":" in env_id:
        bptt, returns = own_env_returns(bptt_env, first, warmup_actions, later_actions)
        return compare(bptt[0], returns, h, num_actions)

    a0_bptt = a0.expand(sim_workers, -1).clone().requires_grad_(True)
    returns = k_step_returns(bptt_env, a0_bptt, warmup_actions, later_actions)
    (bptt,) = torch.autograd.grad(returns.sum(), a0_bptt)  # row k: env k's own gradient
    if not torch.equal(bptt, bptt[:1].expand_as(bptt)):
        raise RuntimeError(f"the {sim_workers} simulations, in the same state, gave different gradients: {bptt}")
    bptt, differentiated = bptt[0], returns[0]
    with torch.no_grad():
        if one_env_each:
            returns = torch.cat([
                k_step_returns(make_env(env_id, 1, seed=start, requires_grad=False), a[None], warmup_actions,
                               later_actions) for a in first
            ])
        else:
            fd_env = make_env(env_id, len(first), seed=start, requires_grad=False)
            returns = k_step_returns(fd_env, first, warmup_actions, later_actions)
    reference, differentiated = returns[0].item(), differentiated.item()
    if abs(reference - differentiated) > 1e-5 * max(1.0, abs(reference)):
        raise BatchDependent(f"the BPTT rollout (R = {differentiated:.7g}) and its copy among the finite "
                             f"differences (R = {reference:.7g}) differ")
    return compare(bptt, returns, h, num_actions)


def compare(bptt, returns, h, num_actions):
    """Per action dimension: BPTT's gradient, the finite differences of `returns` (row 0 at a_0, then a_0 ± h e_d
    for each h), their spread across h and BPTT's error against the middle h."""
    perturbed = returns[1:].double().view(len(h), 2, num_actions)
    fd = (perturbed[:, 0] - perturbed[:, 1]) / (2 * torch.tensor(h, dtype=torch.float64)[:, None])  # (len(h), A)
    mid = fd[len(h) // 2]
    scale = torch.maximum(mid.abs(), 0.1 * mid.abs().max())
    spread = (fd.max(0).values - fd.min(0).values) / scale
    error = (bptt.double() - mid).abs() / scale
    return [
        dict(bptt=bptt[d].item(), fd=fd[:, d].tolist(), spread=spread[d].item(), error=error[d].item())
        for d in range(num_actions)
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env-id", required=True, help="a task id, or your own env as module:Class")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 3], help="K: the return's horizon")
    parser.add_argument("--starts", type=int, nargs="+", default=[0, 1], help="seeds of the start states")
    parser.add_argument("--h", type=float, nargs="+", default=list(DEFAULT_H), help="finite-difference steps")
    parser.add_argument("--warmup", type=int, default=8, help="random-action steps before the start state")
    parser.add_argument("--one-env-each", action="store_true",
                        help="an env of its own for every finite-difference rollout (slower; chosen by itself "
                        "for tasks whose random draws depend on the batch size, e.g. HandReorient)")
    parser.add_argument("--spread", type=float, default=0.01, help="largest FD spread across h of a stable dim")
    parser.add_argument("--sim-workers", type=int, default=1, help="simulations that BPTT runs in parallel")
    args = parser.parse_args(argv)
    try:
        check_env_id(args.env_id)
    except UsageError as error:
        parser.error(str(error))
    if min(args.steps) < 1 or args.warmup < 0 or min(args.h) <= 0 or args.sim_workers < 1:
        parser.error("--steps must be >= 1, --warmup >= 0, every --h > 0 and --sim-workers >= 1")

    failed = checked = 0
    for steps in args.steps:
        for start in args.starts:
            print(f"{args.env_id}  K={steps}  start={start}  tolerance {tolerance(steps):.0%}")
            check = dict(steps=steps, start=start, h=tuple(args.h), warmup=args.warmup, sim_workers=args.sim_workers)
            try:
                try:
                    rows = gradient_check(args.env_id, **check, one_env_each=args.one_env_each)
                except BatchDependent as e:
                    print(f"  {e}: the task's random draws depend on the batch size; one env per rollout")
                    rows = gradient_check(args.env_id, **check, one_env_each=True)
            except EpisodeEnded as e:
                print(f"  not checked: {e}")
                continue
            print("  dim         bptt  " + "  ".join(f"fd(h={hi:g})".rjust(12) for hi in args.h) + "   spread   error")
            for d, r in enumerate(rows):
                stable = r["spread"] <= args.spread
                bad = stable and r["error"] > tolerance(steps)
                failed += bad
                fds = "  ".join(f"{x:12.5g}" for x in r["fd"])
                verdict = ("FAIL" if bad else "ok") if stable else "unstable FD"
                print(f"  {d:3d} {r['bptt']:12.5g}  {fds}  {r['spread']:7.2%} {r['error']:7.2%}  {verdict}")
            stable = [r["error"] for r in rows if r["spread"] <= args.spread]
            checked += len(stable)
            worst = f"{max(stable):.2%}" if stable else "-"
            print(f"  {len(stable)} of {len(rows)} dimensions stable; largest error among them {worst}")
    if not checked:
        print("nothing checked: no stable dimension in any (K, start state)")
        return 1
    print(f"{failed} stable dimension(s) beyond tolerance" if failed else
          f"all {checked} stable dimensions within tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
