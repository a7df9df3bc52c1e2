"""The table and figure of an ablation whose runs may stop before their budget (no final evaluation needed), such as
benchmark/jobs/rpo_entropy_ablation.txt:

    python benchmark/ablation_table.py --runs-dir benchmark/rpo_ablation/runs --at 1e6 2e6 --state-at 1.5e6 \\
        --out benchmark/results/rpo_entropy_ablation.png --table benchmark/results/rpo_entropy_ablation.md

Per experiment (exp_name; its seeds are runs/{env_id}__{exp_name}__{seed}__{time}), mean ± std over seeds: the
training return (mean of the last 100 finished episodes, as benchmark/curves.py counts it) at each --at step and
at the run's end, its peak over the run and the end as a share of the peak; the means of losses/entropy,
losses/alpha and losses/value_loss over the 0.1M env steps before --state-at; and the actor's gradient norm per
term of eq. (22) where benchmark/rpo_term_norms.py (or its predecessor) logged them (grad_norms/*, same window). The figure
has the running return, the entropy and alpha against env steps, one line per run.
"""
import argparse
import os
import sys
from collections import defaultdict

import matplotlib
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from curves import label, order, running_mean  # noqa: E402

STATE_TAGS = ("losses/entropy", "losses/alpha", "losses/value_loss", "grad_norms/surrogate", "grad_norms/kl",
              "grad_norms/entropy", "losses/grad_norm")
WINDOW_STEPS = 100_000


def load(runs_dir):
    """{exp_name: [run, ...]}, run = {"seed", "episodes": (steps, returns), tag: (steps, values)}."""
    experiments = defaultdict(list)
    for name in sorted(os.listdir(runs_dir)):
        parts = name.split("__")
        if len(parts) != 4:
            continue
        accumulator = EventAccumulator(os.path.join(runs_dir, name))
        accumulator.Reload()
        tags = accumulator.Tags()["scalars"]
        series = {tag: (np.array([e.step for e in accumulator.Scalars(tag)]),
                        np.array([e.value for e in accumulator.Scalars(tag)]))
                  for tag in ("charts/episodic_return", *STATE_TAGS) if tag in tags}
        if "charts/episodic_return" in series:
            experiments[parts[1]].append({"seed": int(parts[2]), "episodes": series.pop("charts/episodic_return"),
                                          **series})
    return experiments


def cell(values, fmt="{:.0f}"):
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "—"
    std = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{fmt.format(np.mean(values))} ± {fmt.format(std)} ({len(values)})"


def table(experiments, at, state_at):
    header = [f"return at {m / 1e6:g}M" for m in at] + ["return at the end", "end", "peak", "end / peak"]
    header += [f"{tag.split('/')[1]} ({tag.split('/')[0]}) at {state_at / 1e6:g}M" for tag in STATE_TAGS]
    lines = ["| | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for exp_name in sorted(experiments, key=order):
        runs, cells = experiments[exp_name], []
        curves = [running_mean(run) for run in runs]
        for milestone in at:
            cells.append(cell([means[steps <= milestone][-1] if steps.max() >= milestone else None
                               for steps, means in curves]))
        ends = [means[-1] for _, means in curves]
        peaks = [means.max() for _, means in curves]
        cells += [cell(ends), cell([steps[-1] / 1e6 for steps, _ in curves], "{:.2f}M"), cell(peaks),
                  cell([e / p for e, p in zip(ends, peaks)], "{:.2f}")]
        for tag in STATE_TAGS:
            cells.append(cell([run[tag][1][(run[tag][0] > state_at - WINDOW_STEPS) & (run[tag][0] <= state_at)].mean()
                               if tag in run and (run[tag][0] >= state_at).any() else None for run in runs],
                              "{:.3g}"))
        lines.append(f"| {label(exp_name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(experiments, path):
    panels = (("return (last 100 episodes)", None), ("entropy", "losses/entropy"), ("alpha", "losses/alpha"))
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5))
    for i, exp_name in enumerate(sorted(experiments, key=order)):
        for run in experiments[exp_name]:
            for ax, (title, tag) in zip(axes, panels):
                steps, values = running_mean(run) if tag is None else run.get(tag, ([], []))
                ax.plot(steps, values, color=f"C{i}", lw=1,
                        label=f"{label(exp_name)}, seed {run['seed']}" if tag is None else None)
                ax.set_title(title)
                ax.set_xlabel("env steps")
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--at", type=float, nargs="*", default=[1e6, 2e6], help="env steps of the return columns")
    parser.add_argument("--state-at", type=float, default=1.5e6, help="env step of the entropy, alpha, ... columns")
    parser.add_argument("--out", help="the PNG of the curves (none if not given)")
    parser.add_argument("--table", help="the Markdown table (printed either way)")
    args = parser.parse_args()
    experiments = load(args.runs_dir)
    if not experiments:
        raise SystemExit(f"error: no runs with finished episodes under {args.runs_dir}/")
    text = table(experiments, args.at, args.state_at)
    print(text)
    if args.table:
        with open(args.table, "w") as f:
            f.write(text)
    if args.out:
        plot(experiments, args.out)


if __name__ == "__main__":
    main()
