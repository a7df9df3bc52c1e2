"""envs/state_pool.py: the step's reused states give the same numbers as new ones, bit for bit, and a state is
reused only when nothing else holds it."""
import pytest
import torch
import warp as wp
from helpers import assert_same_horizon, random_actions, rollout

from envs import make_env
from envs.state_pool import StatePool


def new_states_only(monkeypatch):
    """What Rewarped does without the pool: a new zeroed state for every substep."""
    def zeros(pool, copy="zeros"):
        state = pool.new_state(copy=copy)
        pool.integrator.allocate_state_aux_vars(pool.model, state, True)
        return state

    monkeypatch.setattr(StatePool, "zeros", zeros)


@pytest.mark.parametrize("env_id", ["CartPole", "Hopper", "Ant"])
def test_three_horizons_with_resets_are_bit_identical_to_new_states(env_id, monkeypatch):
    """Observations, rewards, episode ends, final observations and action-gradients of three 12-step horizons in
    each of which envs reach their 12-step time limit and reset."""
    results = []
    for pooled in (True, False):
        if not pooled:
            new_states_only(monkeypatch)
        env = make_env(env_id, 3, seed=5, episode_length=12)
        env.reset()
        results.append([rollout(env, random_actions(env, 12, seed=h)) for h in range(3)])
        if pooled:  # the second and third horizons ran on the first one's states
            substeps = env.task.sim_substeps
            assert len(env.task.state_pool.states) <= 13 * substeps  # not 36 steps' worth
    for horizon, new_horizon in zip(*results, strict=True):
        assert_same_horizon(horizon, new_horizon)


def test_a_horizon_whose_graph_is_kept_keeps_its_states():
    """A horizon differentiated after a second horizon ran gets the gradient it gets when differentiated first."""
    grads = []
    for later in (False, True):
        env = make_env("Ant", 2, seed=3)
        env.reset()
        actions = random_actions(env, 4, seed=1).requires_grad_(True)
        env.clear_grad()
        total = sum(env.step(a)[1].sum() for a in actions)
        if later:
            rollout(env, random_actions(env, 4, seed=2))  # needs states of its own: the first graph holds its
        (grad,) = torch.autograd.grad(total, actions)
        grads.append(grad)
    assert torch.equal(*grads) and grads[0].abs().max() > 0


def test_a_reused_state_comes_back_zeroed_and_without_what_a_step_attached():
    """Values and gradients zeroed; arrays that a step attached (the integrator's mass matrices) or put in place
    of the state's own dropped, so that a state reused at another substep does not keep them alive."""
    env = make_env("Hopper", 2, seed=3)
    pool = StatePool(env.task.model, env.task.integrator)
    state = pool.zeros()
    joint_q_id = id(state.joint_q)
    state._pool_values.fill_(7)  # every byte of every array and gradient
    state._pool_grads.fill_(7)
    assert all(array.numpy().any() and array.grad.numpy().any() for _, array in state._pool_arrays)
    state.H, state.joint_q = wp.zeros(4), wp.zeros(4)
    del state
    state = pool.zeros()
    assert len(pool.states) == 1
    assert not any(array.numpy().any() or array.grad.numpy().any() for _, array in state._pool_arrays)
    assert not hasattr(state, "H") and id(state.joint_q) == joint_q_id
    joint_q = state.joint_q  # held elsewhere after the state let go of it: the state is still in use
    state.joint_q = wp.zeros(4)
    del state
    pool.zeros()
    assert len(pool.states) == 2
