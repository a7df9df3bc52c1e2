"""Speed of the four algorithms on one task and device, measured side by side.

    python benchmark/speed.py --env-id Ant --num-envs 32 --iterations 6 --warmup 1

Each script trains for warmup + iterations iterations with its final evaluation switched off. The scripts log
per iteration how long the rollout with its backward pass took (perf/sim_s) and how long the network updates
took (perf/update_s); this reads those tags, drops the warm-up iterations and prints a Markdown table. Jobs run
`--workers` at a time, in the order SHAC, RPO, SAPO, PPO, so that with 2 workers SHAC and RPO share the machine
and their ratio is measured under the same load. Peak memory is the resident set size of each process (host
memory; on a GPU the simulation's own memory is not included).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"SHAC": "shac_dflex.py", "RPO": "rpo_continuous_dflex.py", "SAPO": "sapo_dflex.py", "PPO": "ppo_dflex.py"}


def run(algo, args, tag):
    """Train one script for warmup + iterations iterations; returns (run directory, peak RSS in GiB)."""
    exp_name = f"speed_{algo.lower()}_{tag}"
    steps = args.num_envs * args.horizon * (args.warmup + args.iterations)
    command = [sys.executable, SCRIPTS[algo], "--env-id", args.env_id, "--num-envs", str(args.num_envs),
               "--horizon", str(args.horizon), "--total-timesteps", str(steps), "--exp-name", exp_name,
               "--seed", str(args.seed), "--no-evaluate", "--cuda" if args.cuda else "--no-cuda"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)  # like wait(), plus the child's own resource usage
        if os.waitstatus_to_exitcode(status) != 0:
            stderr.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed:\n{stderr.read().decode()}")
    runs = [d for d in os.listdir(os.path.join(REPO, "runs")) if f"__{exp_name}__" in d]
    return os.path.join(REPO, "runs", max(runs)), usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def perf(run_dir, warmup):
    accumulator = EventAccumulator(run_dir)
    accumulator.Reload()
    sim = [event.value for event in accumulator.Scalars("perf/sim_s")][warmup:]
    update = [event.value for event in accumulator.Scalars("perf/update_s")][warmup:]
    return statistics.mean(sim), statistics.mean(update)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="Ant")
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--horizon", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=6, help="measured iterations per algorithm")
    parser.add_argument("--warmup", type=int, default=1, help="iterations dropped from the front (kernel loads)")
    parser.add_argument("--workers", type=int, default=2, help="algorithms running at the same time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (OMP_NUM_THREADS)")
    parser.add_argument("--algorithms", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cuda", action=argparse.BooleanOptionalAction, default=False, help="use the GPU")
    args = parser.parse_args()

    tag = str(int(time.time()))
    with ThreadPoolExecutor(args.workers) as pool:
        results = dict(zip(args.algorithms, pool.map(lambda algo: run(algo, args, tag), args.algorithms)))

    steps = args.num_envs * args.horizon
    print(f"{args.env_id}, num_envs {args.num_envs}, horizon {args.horizon}, iterations {args.warmup + 1}-"
          f"{args.warmup + args.iterations} from scratch, {min(args.workers, len(args.algorithms))} at a time, "
          f"{args.threads} torch thread(s) "
          f"each, {'cuda' if args.cuda else 'cpu'}\n")
    print("| algorithm | env-steps/s | s per iteration | simulation fwd+bwd (s) | network updates (s) | "
          "(iteration − simulation) ÷ iteration | peak memory (GiB) |")
    print("|---|---|---|---|---|---|---|")
    iteration_s = {}
    for algo, (run_dir, peak_gib) in results.items():
        sim_s, update_s = perf(run_dir, args.warmup)
        iteration_s[algo] = sim_s + update_s
        print(f"| {algo} | {steps / iteration_s[algo]:.0f} | {iteration_s[algo]:.2f} | {sim_s:.2f} | {update_s:.2f} | "
              f"{update_s / iteration_s[algo]:.3f} | {peak_gib:.2f} |")
    if "RPO" in iteration_s and "SHAC" in iteration_s:
        print(f"\nRPO ÷ SHAC seconds per iteration: {iteration_s['RPO'] / iteration_s['SHAC']:.3f}")
    if "PPO" in iteration_s:
        print("PPO's simulation runs forward only (no gradients).")


if __name__ == "__main__":
    main()
