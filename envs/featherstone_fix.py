"""Rewarped 1.3.3's Featherstone integrator (its fork of Warp 1.3.3's) with a correct backward pass.

Each substep's `simulate` recomputes `state_in.body_q` from `state_in.joint_q` (kernel `eval_rigid_fk`) and
then reads it for the contact forces and the inverse dynamics. The previous substep's `eval_fk` has already
written that same array, so it has two writers on the tape: in the backward pass the adjoint that the contact
and dynamics kernels put into `body_q.grad` is passed on to `joint_q` by both writers, i.e. counted twice.
Warp's own integrator does the same. On Anymal that made the one-step action gradient 12-63 % wrong; see
docs/gradients.md#what-it-found.
"""
import copy

import warp as wp

from .rewarped_loading import import_rewarped

import_rewarped()  # Rewarped replaces wp.sim.FeatherstoneIntegrator with its fork


class FeatherstoneIntegrator(wp.sim.FeatherstoneIntegrator):
    def simulate(self, model, state_in, state_out, dt, control=None):
        """Rewarped's substep, given a `body_q` array of its own to write, so the tape has one writer per array."""
        if state_in.requires_grad:
            state_in = copy.copy(state_in)  # shares every other array with the caller's state
            state_in.body_q = wp.zeros_like(state_in.body_q)
        return super().simulate(model, state_in, state_out, dt, control)
