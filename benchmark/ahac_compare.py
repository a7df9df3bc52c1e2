"""Plot AHAC's SHAC on DFlex (benchmark/ahac_shac.py) against our scripts on our task, per env step.

    python benchmark/ahac_compare.py --ahac runs/ahac_shac_Ant_1 runs/ahac_shac_Ant_2 \
        --ours shac=runs/Ant__shac_parity__1__* shac=runs/Ant__shac_parity__2__* rpo=... \
        --out benchmark/results/ant_dflex_parity.png --table benchmark/results/ant_dflex_parity.md

Both sides are the mean undiscounted return of the last 100 finished training episodes, against env steps:
AHAC's SHAC logs exactly that (tag `rewards`); ours log each episode's return (`charts/episodic_return`),
averaged here the same way. The table adds the final value and our final deterministic evaluation.
"""
import argparse
import glob
import os
import statistics
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

WINDOW = 100  # episodes, as AHAC's AverageMeter(1, 100)


def scalars(log_dir, tag):
    accumulator = EventAccumulator(log_dir, size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)] if tag in accumulator.Tags()[
        "scalars"] else []


def ours(run_dir):
    """(steps, 100-episode mean return) after each logged episode, and the final deterministic evaluation."""
    episodes = scalars(run_dir, "charts/episodic_return")
    curve = [(step, statistics.mean(v for _, v in episodes[max(0, i + 1 - WINDOW):i + 1]))
             for i, (step, _) in enumerate(episodes)]
    evaluation = scalars(run_dir, "eval/deterministic_return")
    return curve, evaluation[-1][1] if evaluation else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ahac", nargs="+", default=[], help="log directories of benchmark/ahac_shac.py")
    parser.add_argument("--ours", nargs="+", default=[], help="LABEL=RUN_DIR (glob) of our scripts' runs")
    parser.add_argument("--out", required=True)
    parser.add_argument("--table", required=True)
    args = parser.parse_args()

    curves = defaultdict(list)  # label -> [(curve, final evaluation)]
    for log_dir in args.ahac:
        curves["AHAC's SHAC on DFlex"].append((scalars(os.path.join(log_dir, "log"), "rewards"), None))
    for item in args.ours:
        label, pattern = item.split("=", 1)
        for run_dir in sorted(glob.glob(pattern)):
            curves[f"our {label}"].append(ours(run_dir))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = []
    for (label, runs), color in zip(curves.items(), ["black", "tab:blue", "tab:red", "tab:green"]):
        finals = []
        for i, (curve, evaluation) in enumerate(runs):
            ax.plot([s for s, _ in curve], [v for _, v in curve], color=color, alpha=0.8, lw=1.2,
                    label=label if i == 0 else None)
            finals.append((curve[-1][0], curve[-1][1], evaluation))
        rows.append((label, finals))
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"training return (mean of last {WINDOW} episodes)")
    ax.set_title("Ant, N = 128, one line per seed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)

    with open(args.table, "w") as f:
        f.write(f"| run | seed runs | env steps | last-{WINDOW}-episode training return | final deterministic evaluation |\n")
        f.write("|---|---|---|---|---|\n")
        for label, finals in rows:
            returns = ", ".join(f"{value:.1f}" for _, value, _ in finals)
            evaluations = ", ".join("—" if e is None else f"{e:.1f}" for _, _, e in finals)
            steps = ", ".join(str(step) for step, _, _ in finals)
            f.write(f"| {label} | {len(finals)} | {steps} | {returns} | {evaluations} |\n")
    print(open(args.table).read())


if __name__ == "__main__":
    main()
