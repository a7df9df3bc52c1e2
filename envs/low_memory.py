"""A simulation step that keeps only its inputs for the backward pass and recomputes its forward there.

Rewarped's step keeps, for every step of a horizon, its Warp tape with every substep's state (Featherstone's
mass matrices and Jacobians included) and contact arrays until the backward pass. This one keeps the step's
input tensors (joint_q, joint_qd, joint_act) and nothing else; its backward pass runs the step again on a
tape, from those inputs, and differentiates that: about one step's memory instead of a horizon's, at the cost
of a second forward pass (gradient checkpointing, as Rewarped does with CUDA graphs). Rewards are bit-identical;
gradients too on CartPole, Hopper and Ant, and within 1e-3 of the largest component on Anymal
(docs/usage.md#environment-api).
"""
import torch
import warp as wp
from rewarped.warp_utils import sim_update


def _simulate(task, tensors, tape=None):
    """One frame from the state and control given as tensors, into fresh Warp states; returns the output
    state, the input state and the control. With a tape, the substeps are recorded on it."""
    model, n = task.model, len(task.state_tensors_names)
    state_in, control = model.state(copy="zeros"), model.control(copy="zeros")
    for name, tensor in zip(task.state_tensors_names, tensors[:n]):
        getattr(state_in, name).assign(wp.from_torch(tensor.detach().contiguous()))
    for name, tensor in zip(task.control_tensors_names, tensors[n:]):
        getattr(control, name).assign(wp.from_torch(tensor.detach().contiguous()))
    wp.sim.eval_fk(model, state_in.joint_q, state_in.joint_qd, None, state_in)  # body_q as the last step left it
    states = (state_in, [model.state(copy="zeros") for _ in range(task.sim_substeps - 1)], model.state(copy="zeros"))
    update_params = (tape, task.integrator, model, False, task.synchronize)
    sim_params = (task.sim_substeps, task.sim_dt, task.kinematic_fk, task.eval_ik)
    if tape is None:
        sim_update(update_params, sim_params, states, control)
    else:
        with tape:
            sim_update(update_params, sim_params, states, control)
    return states[2], state_in, control


class RecomputedStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, task, *tensors):
        """Returns the output state tensors; the output Warp state becomes `task.state_0`."""
        ctx.task, ctx.integrator_step = task, task.integrator._step
        ctx.save_for_backward(*tensors)
        state_out, _, _ = _simulate(task, tensors)
        task.state_0 = state_out
        return tuple(wp.to_torch(getattr(state_out, name)) for name in task.state_tensors_names)

    @staticmethod
    def backward(ctx, *adj_outputs):
        task, tensors = ctx.task, ctx.saved_tensors
        step = task.integrator._step
        task.integrator._step = ctx.integrator_step  # the same mass-matrix schedule as in the forward pass
        tape = wp.Tape()
        state_out, state_in, control = _simulate(task, tensors, tape)
        task.integrator._step = step
        for name, adj in zip(task.state_tensors_names, adj_outputs):
            getattr(state_out, name).grad.assign(wp.from_torch(adj.contiguous()))
        tape.backward()
        grads = [wp.to_torch(tape.gradients[getattr(state_in, name)]).clone() for name in task.state_tensors_names]
        grads += [wp.to_torch(tape.gradients[getattr(control, name)]).clone() for name in task.control_tensors_names]
        tape.zero()
        return (None, *grads)
