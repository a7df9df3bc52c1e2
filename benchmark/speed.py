"""Speed of the four algorithms on one task and device, and of the simulator alone, measured side by side.

    python benchmark/speed.py --env-id Ant --num-envs 32 --iterations 6 --warmup 1

Each script trains for warmup + iterations iterations with its final evaluation switched off. The scripts log
per iteration how long the rollout with its backward pass took (perf/sim_s) and how long the network updates
took (perf/update_s); this reads those tags, drops the warm-up iterations and prints a Markdown table. The
"bare" row is the floor: the same task, num_envs and horizon driven with random actions, forward and backward
through the simulator, no networks; the overhead column is each algorithm's iteration time minus the floor's.
The slowdown column is the mean iteration time of the last quarter of the measured iterations over that of
the first quarter. Jobs run `--workers` at a time, in the order SHAC, RPO, SAPO, bare, PPO, so that with 2
workers SHAC and RPO share the machine (their ratio is measured under the same load), then SAPO and the bare
simulator. Peak memory is the resident set size of each process (host memory; on a GPU the simulation's own
memory is not included); the bare simulator's with `--sim-workers P > 1` is the sum over its own process and
its P simulation processes, a script's the largest of these (the operating system reports no sum).

`--baseline REF` measures the same jobs, one at a time, from a checkout of commit REF too (a temporary git
worktree), each pair twice in both orders (ours then REF's, REF's then ours), and prints REF's seconds per
iteration over ours: the speed-up of the working tree over REF on the same cores under the same load.

    python benchmark/speed.py --env-id Ant --num-envs 128 --iterations 3 --algorithms bare RPO --baseline HEAD~2

`--algorithms processes` adds, for each P of `--sim-workers` but the first, the bare simulator as P separate
processes of N/P envs each, started together and never waiting for each other: the ceiling of `--sim-workers P`
(whose P simulation processes exchange every step with the calling process) on this machine:

    python benchmark/speed.py --env-id Ant --num-envs 128 --iterations 3 --algorithms bare processes --sim-workers 1 2

`--dflex PATH` adds a "DFlex" row: the bare loop on AHAC's own DFlex task (the `dflex` folder of a checkout
of github imgeorgiev/DiffRL; docs/tasks.md#ant), for the paper's tasks Ant, Hopper, Humanoid and Anymal:

    python benchmark/speed.py --env-id Ant --num-envs 32 --algorithms bare DFlex --dflex /path/to/DiffRL/dflex
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from dflex_reference import DFLEX_TASKS
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"SHAC": "shac_dflex.py", "RPO": "rpo_continuous_dflex.py", "SAPO": "sapo_dflex.py", "PPO": "ppo_dflex.py"}
JOBS = ["SHAC", "RPO", "SAPO", "bare", "processes", "DFlex", "PPO"]  # the order in which they start


def bare_simulator(args):
    """The floor: H steps of random actions from clear_grad(), then the backward pass of the summed rewards to
    the actions, as the scripts drive the simulator but without networks. Prints each iteration's seconds.
    With `--dflex`, the same loop on AHAC's DFlex task."""
    sys.path.insert(0, args.repo)
    import torch

    from envs import make_env

    device = "cuda" if args.cuda else "cpu"
    if args.dflex:
        sys.path.append(args.dflex)
        import dflex.envs

        name, mass_matrix_every = DFLEX_TASKS[args.env_id]
        env = getattr(dflex.envs, name)(device=device, num_envs=args.num_envs, no_grad=False, stochastic_init=True,
                                        MM_caching_frequency=mass_matrix_every)
        env.reset()
        start_horizon = env.initialize_trajectory  # DFlex's clear_grad
    else:
        env = make_env(args.env_id, args.num_envs, device, args.seed, sim_workers=args.sim_workers[0])
        env.reset()
        start_horizon = env.clear_grad
    generator = torch.Generator(device).manual_seed(args.seed)
    seconds = []
    for _ in range(args.warmup + args.iterations):
        start = time.time()
        start_horizon()
        shape = (args.horizon, env.num_envs, env.num_actions)
        actions = (2 * torch.rand(shape, generator=generator, device=device) - 1).requires_grad_(True)
        torch.stack([env.step(action)[1] for action in actions]).sum().backward()
        if args.cuda:
            torch.cuda.synchronize()
        seconds.append(time.time() - start)
    # with the simulations' worker processes (--sim-workers P > 1; where they are threads, there is no `call`)
    workers_gib = sum(env.call(peak_rss_gib)) if args.sim_workers[0] > 1 and hasattr(env, "call") else 0.0
    print(json.dumps({"seconds": seconds, "peak_gib": peak_rss_gib() + workers_gib}))


def peak_rss_gib(env=None):
    """This process's peak resident set size in GiB (`env`: ignored; called in each simulation's process)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run(job, sim_workers, args, tag, repo=REPO):
    """Run one job (from the checkout `repo`) for warmup + iterations iterations with its envs in `sim_workers`
    simulations; returns the per-iteration seconds of simulation (fwd+bwd) and of network updates, and the peak
    RSS in GiB. The "processes" job is the bare simulator as `sim_workers` separate processes of N/P envs each,
    started together and never synchronised, so the ceiling of `--sim-workers P`; its seconds per iteration are
    the slowest process's, its memory the processes' sum."""
    common = ["--env-id", args.env_id, "--horizon", str(args.horizon), "--seed", str(args.seed),
              "--cuda" if args.cuda else "--no-cuda"]
    if job in ("bare", "DFlex", "processes"):
        command = [sys.executable, os.path.abspath(__file__), "--bare", "--repo", repo, "--iterations",
                   str(args.iterations), "--warmup", str(args.warmup)] + common
        if job == "DFlex":
            commands = [command + ["--num-envs", str(args.num_envs), "--dflex", args.dflex]]
        elif job == "bare":
            commands = [command + ["--num-envs", str(args.num_envs), "--sim-workers", str(sim_workers)]]
        else:
            commands = [command + ["--num-envs", str(args.num_envs // sim_workers), "--sim-workers", "1"]] * sim_workers
    else:
        exp_name = f"speed_{job.lower()}_p{sim_workers}_{tag}"
        steps = args.num_envs * args.horizon * (args.warmup + args.iterations)
        commands = [[sys.executable, SCRIPTS[job], "--total-timesteps", str(steps), "--exp-name", exp_name,
                     "--no-evaluate", "--num-envs", str(args.num_envs), "--sim-workers", str(sim_workers)] + common]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    outputs, peak_gib = [], 0.0
    with ExitStack() as files:
        started = []
        for command in commands:
            stdout, stderr = (files.enter_context(tempfile.TemporaryFile()) for _ in range(2))
            started.append((command, subprocess.Popen(command, cwd=repo, env=env, stdout=stdout, stderr=stderr),
                            stdout, stderr))
        for command, process, stdout, stderr in started:
            _, status, usage = os.wait4(process.pid, 0)  # like wait(), plus the child's own resource usage
            if os.waitstatus_to_exitcode(status) != 0:
                stderr.seek(0)
                raise RuntimeError(f"{' '.join(command)} failed:\n{stderr.read().decode()}")
            stdout.seek(0)
            outputs.append(stdout.read().decode())
            peak_gib += usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux
    if job in ("bare", "DFlex", "processes"):
        results = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
        sim = [max(times) for times in zip(*(result["seconds"] for result in results))]
        return sim, [0.0] * len(sim), sum(result["peak_gib"] for result in results)
    runs = [d for d in os.listdir(os.path.join(repo, "runs")) if f"__{exp_name}__" in d]
    return (*perf(os.path.join(repo, "runs", max(runs))), peak_gib)


def compare(args, jobs, tag):
    """Every job from the working tree and from a worktree of `args.baseline`, alone, in both orders."""
    baseline = tempfile.mkdtemp(prefix="speed_baseline_")
    subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", baseline, args.baseline], check=True,
                   capture_output=True)
    try:
        print(f"{args.env_id}, num_envs {args.num_envs}, horizon {args.horizon}, iterations {args.warmup + 1}-"
              f"{args.warmup + args.iterations} from scratch, one job at a time, {args.threads} torch thread(s); "
              f"the working tree against {args.baseline}, each pair in both orders\n")
        print("| job | P | order | ours (s per iteration) | baseline (s per iteration) | baseline ÷ ours | "
              "peak memory ours / baseline (GiB) |")
        print("|---|---|---|---|---|---|---|")
        for job, p in jobs:
            for order in (("ours", "baseline"), ("baseline", "ours")):
                times, peaks = {}, {}
                for side in order:
                    sim, update, peaks[side] = run(job, p, args, f"{tag}_{side}", REPO if side == "ours" else baseline)
                    times[side] = statistics.mean(a + b for a, b in list(zip(sim, update))[args.warmup:])
                print(f"| {job} | {p} | {' then '.join(order)} | {times['ours']:.2f} | {times['baseline']:.2f} | "
                      f"{times['baseline'] / times['ours']:.2f} | {peaks['ours']:.2f} / {peaks['baseline']:.2f} |")
    finally:
        subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", baseline], check=True)


def perf(run_dir):
    accumulator = EventAccumulator(run_dir)
    accumulator.Reload()
    sim = [event.value for event in accumulator.Scalars("perf/sim_s")]
    update = [event.value for event in accumulator.Scalars("perf/update_s")]
    return sim, update


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="Ant")
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--horizon", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=6, help="measured iterations per algorithm")
    parser.add_argument("--warmup", type=int, default=1, help="iterations dropped from the front (kernel loads)")
    parser.add_argument("--workers", type=int, default=2, help="algorithms running at the same time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (OMP_NUM_THREADS)")
    parser.add_argument("--algorithms", nargs="+", choices=JOBS,
                        default=[j for j in JOBS if j not in ("DFlex", "processes")],
                        help="what to measure; bare: the simulator alone; processes: the bare simulator as P "
                             "separate processes (each P of --sim-workers but the first); DFlex: AHAC's "
                             "simulator alone")
    parser.add_argument("--dflex", help="path of DFlex's source (the dflex folder of imgeorgiev/DiffRL)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sim-workers", type=int, nargs="+", default=[1],
                        help="measure every job with its envs split over each of these numbers of simulations")
    parser.add_argument("--cuda", action=argparse.BooleanOptionalAction, default=False, help="use the GPU")
    parser.add_argument("--baseline", metavar="REF", help="also measure every job from commit REF (see above)")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)  # run as the bare-simulator job
    parser.add_argument("--repo", default=REPO, help=argparse.SUPPRESS)  # the bare job's checkout
    args = parser.parse_args()
    if ("DFlex" in args.algorithms or args.dflex) and args.env_id not in DFLEX_TASKS:
        parser.error(f"DFlex has no {args.env_id}; its tasks: {', '.join(DFLEX_TASKS)}")
    if "DFlex" in args.algorithms and not args.dflex:
        parser.error("the DFlex row needs --dflex PATH (the dflex folder of a github imgeorgiev/DiffRL checkout)")
    if args.bare:
        return bare_simulator(args)
    if "processes" in args.algorithms and any(args.num_envs % p for p in args.sim_workers[1:]):
        parser.error(f"the processes job splits --num-envs {args.num_envs} into P equal parts: give a --num-envs "
                     f"that every P of --sim-workers {' '.join(map(str, args.sim_workers[1:]))} divides")

    tag = str(int(time.time()))
    workers = {"DFlex": [1], "processes": args.sim_workers[1:]}
    jobs = [(job, p) for job in JOBS if job in args.algorithms for p in workers.get(job, args.sim_workers)]
    if args.baseline:
        return compare(args, jobs, tag)
    with ThreadPoolExecutor(args.workers) as pool:
        results = dict(zip(jobs, pool.map(lambda job: run(*job, args, tag), jobs)))

    steps = args.num_envs * args.horizon
    print(f"{args.env_id}, num_envs {args.num_envs}, horizon {args.horizon}, iterations {args.warmup + 1}-"
          f"{args.warmup + args.iterations} from scratch, {min(args.workers, len(jobs))} at a time, "
          f"{args.threads} torch thread(s) "
          f"each, {'cuda' if args.cuda else 'cpu'}; P: the number of simulations the envs are split over\n")
    print("| algorithm | P | env-steps/s | s per iteration | simulation fwd+bwd (s) | network updates (s) | "
          "(iteration − simulation) ÷ iteration | overhead over bare (s) | last ÷ first quarter | "
          "peak memory (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = {}
    for job, (sim, update, peak_gib) in results.items():
        sim, update = sim[args.warmup:], update[args.warmup:]
        rows[job] = statistics.mean(sim), statistics.mean(update), [a + b for a, b in zip(sim, update)], peak_gib
    iteration_s = {job: statistics.mean(times) for job, (_, _, times, _) in rows.items()}
    for (job, p), (sim_s, update_s, times, peak_gib) in rows.items():
        quarter = max(1, len(times) // 4)
        slowdown = statistics.mean(times[-quarter:]) / statistics.mean(times[:quarter])
        overhead = "—" if ("bare", p) not in iteration_s or job in ("PPO", "DFlex", "processes") else \
            f"{iteration_s[job, p] - iteration_s['bare', p]:.2f}"
        label = {"bare": "bare simulator", "processes": "bare simulator, P processes",
                 "DFlex": "DFlex simulator (AHAC)"}.get(job, job)
        print(f"| {label} | {p} | {steps / iteration_s[job, p]:.0f} | "
              f"{iteration_s[job, p]:.2f} | {sim_s:.2f} | {update_s:.2f} | {update_s / iteration_s[job, p]:.3f} | "
              f"{overhead} | {slowdown:.3f} | {peak_gib:.2f} |")
    first = args.sim_workers[0]
    if ("RPO", first) in iteration_s and ("SHAC", first) in iteration_s:
        print(f"\nRPO ÷ SHAC seconds per iteration (P={first}): "
              f"{iteration_s['RPO', first] / iteration_s['SHAC', first]:.3f}")
    if ("DFlex", 1) in iteration_s and ("bare", 1) in iteration_s:
        print(f"Ours ÷ DFlex simulator seconds per iteration: {iteration_s['bare', 1] / iteration_s['DFlex', 1]:.3f}")
    for job in dict.fromkeys(job for job, _ in iteration_s):
        base = "bare" if job == "processes" else job  # P processes against the bare simulator in one
        for p in args.sim_workers[1:]:
            if (job, p) in iteration_s and (base, first) in iteration_s:
                print(f"{job}: P={p} is {iteration_s[base, first] / iteration_s[job, p]:.2f} x as fast as "
                      f"{base} P={first}")
    if any(job == "PPO" for job, _ in iteration_s):
        print("PPO's simulation runs forward only (no gradients).")


if __name__ == "__main__":
    main()
