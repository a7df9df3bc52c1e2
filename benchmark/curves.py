"""Learning curves and the final-return table from the TensorBoard logs under runs/.

    python benchmark/curves.py --out runs/curves.png --table runs/results.md

Run directories are runs/{env_id}__{exp_name}__{seed}__{time}; a run counts once its final evaluation is logged.
Runs with the same task and exp_name are seeds of one experiment. The PNG has one panel per task with
charts/episodic_return (one point per finished episode, averaged where several end at the same env step)
against env steps, mean ± std over seeds, one line per experiment. The Markdown file has
the final deterministic and stochastic evaluation returns (mean ± std over seeds) in the layout of the RPO
paper's Table 1, with the paper's deterministic numbers beside ours.

`--kl` adds the RPO paper's Figure 1 measure below the returns: losses/kl (the mean over the rollout's states of
KL(pi_before || pi_after), the actor before and after the iteration's policy update) and losses/kl_max (its
largest per-state value), against env steps on a log scale, mean ± std over seeds, for the runs that log them
(SHAC, SAPO, RPO):

    python benchmark/curves.py --kl --only sapo_dflex rpo_continuous_dflex --out runs/figure1.png

`--wall-clock` adds a row of the returns against training hours: charts/SPS is global_step over the training
time so far (a resumed run's clock continues from its checkpoint; start-up and the time between a stop and its
resume do not count). `--milestones 1000000 2000000 3000000 --thresholds 2000 4000 6000` adds a table: per
experiment the training return (mean of the last 100 finished episodes, as AHAC's SHAC logs it) at each
milestone, and the env steps and training hours at which that running mean first reaches each threshold.
"""
import argparse
import os
from collections import defaultdict

import matplotlib
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

ALGORITHMS = {"ppo_dflex": "PPO", "shac_dflex": "SHAC", "sapo_dflex": "SAPO", "rpo_continuous_dflex": "RPO"}
TASKS = ["HandReorient", "Hopper", "Ant", "Humanoid", "Anymal", "CartPole"]
KL_TAGS = ("losses/kl", "losses/kl_max")  # per iteration, logged by SHAC, SAPO and RPO
WINDOW = 100  # episodes in the running mean of the milestone table, as AHAC's SHAC averages its training return
# The RPO paper's Table 1 (deterministic evaluation, mean ± std over seeds), as docs/algorithms.md#hyperparameters
# restates it
PAPER_TABLE_1 = {
    "PPO": {"HandReorient": "20.32 ± 13.55", "Hopper": "3977.85 ± 159.95", "Ant": "4188.62 ± 908.43",
            "Humanoid": "2224.96 ± 551.07", "Anymal": "10211.84 ± 2153.12"},
    "SHAC": {"HandReorient": "201.25 ± 40.93", "Hopper": "5068.42 ± 299.73", "Ant": "8301.75 ± 1120.13",
             "Humanoid": "7726.13 ± 755.39", "Anymal": "14514.12 ± 692.62"},
    "SAPO": {"HandReorient": "225.23 ± 24.16", "Hopper": "5478.12 ± 4.45", "Ant": "9098.83 ± 1024.71",
             "Humanoid": "8714.34 ± 427.89", "Anymal": "14769.62 ± 62.54"},
    "RPO": {"HandReorient": "230.89 ± 34.73", "Hopper": "5480.85 ± 8.19", "Ant": "9215.61 ± 949.91",
            "Humanoid": "9035.38 ± 265.98", "Anymal": "16008.61 ± 395.33"},
}


def load_runs(runs_dir, only=None):
    """{(env_id, exp_name): [run, ...]} with run = dict(seed, steps, returns, deterministic, stochastic)."""
    experiments = defaultdict(list)
    for name in sorted(os.listdir(runs_dir)):
        parts = name.split("__")
        if len(parts) != 4 or (only and parts[1] not in only):
            continue
        accumulator = EventAccumulator(os.path.join(runs_dir, name))
        accumulator.Reload()
        tags = accumulator.Tags()["scalars"]
        if "eval/deterministic_return" not in tags:
            continue  # unfinished or evaluation switched off
        curve = accumulator.Scalars("charts/episodic_return") if "charts/episodic_return" in tags else []
        # one point per finished episode: episodes that ended at the same env step become their mean
        steps, index = np.unique([event.step for event in curve], return_inverse=True)
        returns = np.bincount(index, weights=[event.value for event in curve]) / np.bincount(index) if curve else []
        experiments[parts[0], parts[1]].append({
            "seed": int(parts[2]),
            "steps": steps,
            "returns": np.asarray(returns),
            "episodes": (np.array([event.step for event in curve]), np.array([event.value for event in curve])),
            **{tag: (np.array([e.step for e in accumulator.Scalars(tag)]),
                     np.array([e.value for e in accumulator.Scalars(tag)])) for tag in (*KL_TAGS, "charts/SPS")
               if tag in tags},
            "deterministic": accumulator.Scalars("eval/deterministic_return")[-1].value,
            "stochastic": accumulator.Scalars("eval/stochastic_return")[-1].value,
        })
    return experiments


def tasks_of(experiments):
    present = {task for task, _ in experiments}
    return [task for task in TASKS if task in present] + sorted(present - set(TASKS))


def mean_std(values):
    """Mean and sample standard deviation over seeds (axis 0); std 0 for a single seed."""
    values = np.asarray(values, dtype=np.float64)
    std = values.std(0, ddof=1) if len(values) > 1 else np.zeros_like(values[0])
    return values.mean(0), std


def order(exp_name):
    """Sort key: PPO, SHAC, SAPO, RPO as in the paper's table, each followed by its variants."""
    scripts = list(ALGORITHMS)
    return next((i for i, script in enumerate(scripts) if exp_name.startswith(script)), len(scripts)), exp_name


def label(exp_name):
    """PPO for ppo_dflex, "PPO (1M)" for a variant ppo_dflex_1M, the exp_name itself otherwise."""
    for script, name in ALGORITHMS.items():
        if exp_name == script:
            return name
        if exp_name.startswith(script + "_"):
            return f"{name} ({exp_name[len(script) + 1:]})"
    return exp_name


def running_mean(run):
    """(env step, mean return of the last WINDOW finished episodes) after each finished episode."""
    steps, returns = run["episodes"]
    order = np.argsort(steps, kind="stable")
    steps, total = steps[order], np.concatenate([[0.0], np.cumsum(returns[order])])
    count = np.arange(1, len(steps) + 1)
    first = np.maximum(0, count - WINDOW)
    return steps, (total[count] - total[first]) / (count - first)


def trained_until(run):
    """The env step a run reached, give or take its last iteration (a budget such as 3M steps ends at the last
    whole iteration below it), from charts/SPS; its last episode's step without that tag."""
    if "charts/SPS" not in run:
        return run["episodes"][0].max(initial=0)
    steps = run["charts/SPS"][0]
    return steps[-1] + (steps[-1] - steps[-2] if len(steps) > 1 else 0)


def training_hours(run, steps):
    """Training wall-clock hours at env steps `steps`, from charts/SPS = global_step / training seconds."""
    sps_steps, sps = run["charts/SPS"]
    return np.interp(steps, sps_steps, sps_steps / np.maximum(sps, 1)) / 3600


def curve_band(ax, runs, series, color, label):
    """Mean ± std over `runs` of `series(run)` = (steps, values), on the env steps that all runs cover."""
    runs = [run for run in runs if len(series(run)[0])]
    if not runs:
        return
    grid = np.linspace(max(series(run)[0][0] for run in runs), min(series(run)[0][-1] for run in runs), 200)
    mean, std = mean_std(np.stack([np.interp(grid, *series(run)) for run in runs]))
    ax.plot(grid, mean, color=color, label=f"{label} ({len(runs)} seeds)")
    ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2)


def plot(experiments, path, kl=False, wall_clock=False):
    tasks = tasks_of(experiments)
    colors = {exp_name: f"C{i}" for i, exp_name in enumerate(sorted({e for _, e in experiments}, key=order))}
    rows = [("episodic return", "env steps", lambda run: (run["steps"], run["returns"]))]
    if wall_clock:
        rows += [("episodic return", "training hours", lambda run: (training_hours(run, run["steps"]), run["returns"])
                  if "charts/SPS" in run else ([], []))]
    if kl:
        rows += [(tag, "env steps", lambda run, tag=tag: run.get(tag, ([], []))) for tag in KL_TAGS]
    fig, axes = plt.subplots(len(rows), len(tasks), figsize=(5 * len(tasks), 4 * len(rows)), squeeze=False)
    for row, (ylabel, xlabel, series) in enumerate(rows):
        for ax, task in zip(axes[row], tasks):
            for (env_id, exp_name), runs in sorted(experiments.items(), key=lambda item: order(item[0][1])):
                if env_id == task:
                    curve_band(ax, runs, series, colors[exp_name], label(exp_name))
            ax.set_title(task)
            ax.set_xlabel(xlabel)
            if xlabel == "env steps":
                ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
            ax.set_ylabel(ylabel)
            if ylabel in KL_TAGS:
                ax.set_yscale("log")  # spikes of the KL span orders of magnitude
            if ax.lines:
                ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def table(experiments):
    tasks = tasks_of(experiments)
    exp_names = sorted({e for _, e in experiments}, key=order)
    lines = []
    for mode in ("deterministic", "stochastic"):
        lines += [f"**{mode.capitalize()} evaluation** (mean ± std over seeds; seeds in brackets)", "",
                  "| | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
        for exp_name in exp_names:
            cells = []
            for task in tasks:
                runs = experiments.get((task, exp_name), [])
                mean, std = mean_std([run[mode] for run in runs]) if runs else (None, None)
                cells.append(f"{mean:.2f} ± {std:.2f} ({len(runs)})" if runs else "—")
            lines.append(f"| {label(exp_name)} | " + " | ".join(cells) + " |")
            paper = PAPER_TABLE_1.get(label(exp_name), {})
            if mode == "deterministic" and any(task in paper for task in tasks):
                lines.append(f"| {label(exp_name)}, paper | " + " | ".join(paper.get(t, "—") for t in tasks) + " |")
        lines.append("")
    return "\n".join(lines)


def milestone_table(experiments, milestones, thresholds):
    """Markdown: per experiment, the WINDOW-episode training return at each milestone and the env steps and
    training hours at which it first reaches each threshold (mean ± std over the seeds that did; how many did)."""
    def cell(values, fmt):
        return f"{fmt(np.mean(values))} ± {fmt(np.std(values, ddof=1) if len(values) > 1 else 0.0)}"

    lines = []
    for task in tasks_of(experiments):
        header = [f"{m / 1e6:g}M steps" for m in milestones] + [f"reaches {t:g}" for t in thresholds]
        lines += [f"**{task}**: training return (mean of the last {WINDOW} episodes; seeds in brackets), and when it "
                  "first reaches each threshold (env steps, training hours)", "",
                  "| | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
        for (env_id, exp_name), runs in sorted(experiments.items(), key=lambda item: order(item[0][1])):
            if env_id != task:
                continue
            curves = [running_mean(run) for run in runs]
            cells = []
            for milestone in milestones:
                values = [means[steps <= milestone][-1] for run, (steps, means) in zip(runs, curves)
                          if (steps <= milestone).any() and trained_until(run) >= milestone]
                cells.append(f"{cell(values, lambda x: f'{x:.1f}')} ({len(values)})" if values else "—")
            for threshold in thresholds:
                reached = [(run, steps[means >= threshold][0]) for run, (steps, means) in zip(runs, curves)
                           if (means >= threshold).any()]
                if not reached:
                    cells.append(f"— (0 of {len(runs)})")
                    continue
                steps = [step for _, step in reached]
                hours = [training_hours(run, step) for run, step in reached if "charts/SPS" in run]
                wall = cell(hours, lambda x: f"{x:.2f} h") if hours else "—"
                cells.append(f"{cell(steps, lambda x: f'{x / 1e6:.2f}M')}, {wall} ({len(reached)} of {len(runs)})")
            lines.append(f"| {label(exp_name)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--only", nargs="*", help="exp_names to include (default: all)")
    parser.add_argument("--out", default="runs/curves.png", help="the PNG of the learning curves")
    parser.add_argument("--table", default="runs/results.md", help="the Markdown table of final returns")
    parser.add_argument("--kl", action="store_true", help="add the rows of losses/kl and losses/kl_max (Figure 1)")
    parser.add_argument("--wall-clock", action="store_true", help="add a row of the returns against training hours")
    parser.add_argument("--milestones", type=float, nargs="*", default=[], help="env steps of the milestone table")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[], help="returns of the milestone table")
    args = parser.parse_args()
    experiments = load_runs(args.runs_dir, args.only)
    if not experiments:
        raise SystemExit(f"error: no finished runs under {args.runs_dir}/ (a run counts once its evaluation is logged)")
    plot(experiments, args.out, args.kl, args.wall_clock)
    text = table(experiments)
    if args.milestones or args.thresholds:
        text += "\n" + milestone_table(experiments, args.milestones, args.thresholds)
    with open(args.table, "w") as f:
        f.write(text)
    print(text)
    print(f"curves: {args.out}, table: {args.table}")


if __name__ == "__main__":
    main()
