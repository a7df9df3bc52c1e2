"""rpo_continuous_dflex.py with the gradient norm that each term of its actor loss, eq. (22), contributes before
clipping logged, and an early stop that keeps the learning-rate schedule of --total-timesteps (docs/rpo.md):

    python benchmark/rpo_term_norms.py --env-id Ant --num-envs 128 --total-timesteps 3000000 --seed 11 \\
        --checkpoint-every 25 --stop-at-step 2200000

Logged per iteration, means over the policy epochs: grad_norms/surrogate, grad_norms/kl and grad_norms/entropy,
the norms of the actor-parameter gradients of L_clip, c_KL * KL and c_ent * L_ent (losses/grad_norm is the norm of
their sum, before clipping). A run stopped by --stop-at-step checkpoints and exits cleanly, without the final
evaluation; the same command with --resume and a later --stop-at-step continues it. The entropy ablation of
docs/rpo.md ran this tool's predecessor at commit 0cab7e6, which could also weight the entropy term other ways.
"""
import os
import signal
import sys
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import rpo_continuous_dflex as rpo  # noqa: E402


@dataclass
class TermNormArgs(rpo.Args):
    stop_at_step: int = 0
    """checkpoint and stop after the iteration that reaches this env step (0: run to --total-timesteps)"""


def main():
    args = tyro.cli(TermNormArgs)
    term_norms = defaultdict(list)
    script_policy_loss, script_start_run = rpo.policy_loss, rpo.start_run

    def policy_loss(actor, b_obs, b_u, b_action_grads, old_mean, old_log_std, target_entropy, args):
        loss, stats = script_policy_loss(actor, b_obs, b_u, b_action_grads, old_mean, old_log_std, target_entropy,
                                         args)
        terms = {"surrogate": stats["surrogate"], "kl": -args.kl_coef * stats["kl"],
                 "entropy": args.ent_coef * stats["entropy"]}
        params = list(actor.parameters())
        for name, term in terms.items():
            grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            term_norms[name].append(torch.stack([g.norm() for g in grads if g is not None]).norm().item())
        return loss, stats

    def start_run(*args):
        run_name, writer, checkpoint = script_start_run(*args)
        add_scalar = writer.add_scalar

        def add_scalar_and_term_norms(tag, value, step, *rest, **kwargs):
            add_scalar(tag, value, step, *rest, **kwargs)
            if tag == "losses/surrogate":  # once per iteration, after the policy epochs
                for name, norms in term_norms.items():
                    add_scalar(f"grad_norms/{name}", np.mean(norms), step)
                term_norms.clear()

        writer.add_scalar = add_scalar_and_term_norms
        return run_name, writer, checkpoint

    stopped = []
    save_if_due = rpo.Checkpointer.save_if_due

    def save_if_due_or_stop(self, progress):
        if args.stop_at_step and progress["global_step"] >= args.stop_at_step:
            stopped.append(progress["global_step"])
            self.stop.signal = signal.SIGTERM  # the script's own stop: checkpoint, close the log, exit
        save_if_due(self, progress)

    rpo.policy_loss, rpo.start_run, rpo.Checkpointer.save_if_due = policy_loss, start_run, save_if_due_or_stop
    try:
        rpo.main(args)
    except rpo.UsageError as error:
        sys.exit(f"error: {error}")
    except SystemExit as stop:
        if not stopped:
            raise
        print(f"--stop-at-step {args.stop_at_step}: {stop.code}")


if __name__ == "__main__":
    main()
