"""`make_env(..., sim_workers=P)`: the envs split over P simulations stepped in parallel worker processes
(envs/sharded_env.py) behave as one simulation of all of them, forward and backward."""
import gc
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import torch
from helpers import random_actions, rollout

from envs import check_sim_workers, make_env
from envs.gradcheck import nominal_start
from envs.sharded_env import shard_seed


def nominal(env):
    env.call(nominal_start)
    return env


def one_simulation_rollout(env_id, low_memory, actions):
    one = nominal(make_env(env_id, 4, seed=3, episode_length=12, low_memory=low_memory))
    one.reset()
    return rollout(one, actions)


@pytest.mark.parametrize("env_id, low_memory", [("CartPole", False), ("CartPole", True), ("Ant", False)])
def test_two_simulations_give_one_simulations_observations_rewards_ends_and_gradients(env_id, low_memory):
    """From the same start states with the same actions, over 20 steps in which every env reaches its 12-step
    time limit and resets: bit-identical (the envs' dynamics are independent of each other). The one simulation
    runs in a fresh process, as each of the two does: Rewarped's Ant observes through TorchScript functions, whose
    gradient formulas change after their first calls in a process, so an Ant's gradients differ in their last
    bits (up to 3e-7) after another Ant's random reset in the same process."""
    two = nominal(make_env(env_id, 4, seed=3, episode_length=12, low_memory=low_memory, sim_workers=2))
    two.reset()
    actions = random_actions(two, 20, seed=1)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh_process:
        steps_one, grad_one = fresh_process.submit(one_simulation_rollout, env_id, low_memory, actions).result()
    steps_two, grad_two = rollout(two, actions)
    assert any(truncated.any() for _, _, _, truncated, _ in steps_one), "no reset inside the window"
    for step_one, step_two in zip(steps_one, steps_two):
        for a, b in zip(step_one, step_two):
            assert torch.equal(a, b)
    assert torch.equal(grad_one, grad_two) and grad_one[:6].abs().sum() > 0


def test_shard_k_draws_the_random_stream_of_its_own_seed_and_shard_0_that_of_the_envs_seed():
    start = make_env("CartPole", 4, seed=5, sim_workers=2).reset()
    assert shard_seed(5, 0) == 5 and shard_seed(5, 1) not in (5, 6)
    for k, expected_seed in enumerate((5, shard_seed(5, 1))):
        assert torch.equal(start[2 * k: 2 * k + 2], make_env("CartPole", 2, seed=expected_seed).reset())
    assert not torch.equal(start[:2], start[2:])  # the shards' start states differ


def test_two_simulations_without_gradients_give_one_simulations_rollout():
    """The simulator without its backward pass (PPO's env), stepped in two threads."""
    one = nominal(make_env("Ant", 4, seed=3, episode_length=12, requires_grad=False))
    two = nominal(make_env("Ant", 4, seed=3, episode_length=12, requires_grad=False, sim_workers=2))
    one.reset(), two.reset()
    for a in random_actions(one, 20, seed=1):
        for x, y in zip(one.step(a)[:4], two.step(a)[:4]):
            assert torch.equal(x, y)


def test_a_restored_two_simulation_env_steps_like_the_original():
    env = make_env("CartPole", 4, seed=3, episode_length=12, sim_workers=2)
    env.reset()
    for a in random_actions(env, 7, seed=1):
        env.step(a)
    copy = make_env("CartPole", 4, seed=8, episode_length=12, sim_workers=2)
    copy.reset()
    copy.load_state_dict(env.state_dict())
    actions = random_actions(env, 10, seed=4)
    (steps_a, grad_a), (steps_b, grad_b) = rollout(env, actions), rollout(copy, actions)
    for step_a, step_b in zip(steps_a, steps_b):
        assert all(torch.equal(a, b) for a, b in zip(step_a, step_b))
    assert torch.equal(grad_a, grad_b)
    with pytest.raises(ValueError, match="cannot be loaded into an env of 2; use --sim-workers 1"):
        copy.load_state_dict({"sim_workers": 1, "shards": []})


@pytest.mark.parametrize("sim_workers, num_envs, message", [
    (0, 4, "--sim-workers must be a positive integer, got 0"),
    (-2, 4, "--sim-workers must be a positive integer, got -2"),
    (True, 4, "--sim-workers must be a positive integer, got True"),
    (8, 4, "--sim-workers 8 must divide --num-envs 4"),
    (3, 4, "--sim-workers 3 must divide --num-envs 4"),
])
def test_a_number_of_simulations_that_cannot_split_the_envs_is_refused(sim_workers, num_envs, message):
    with pytest.raises(ValueError, match=message):
        make_env("CartPole", num_envs, sim_workers=sim_workers)


def test_several_simulations_on_a_gpu_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="on cuda one simulation runs all envs in parallel already: use "
                                         "--sim-workers 1"):
        check_sim_workers(2, 4, "cuda")


def test_a_two_simulation_env_renders_its_first_envs():
    one, two = nominal(make_env("CartPole", 4)), nominal(make_env("CartPole", 4, sim_workers=2))
    one.reset(), two.reset()
    assert np.array_equal(one.render(), two.render())


def test_an_error_in_a_simulations_process_is_raised_in_the_caller():
    two = make_env("CartPole", 4, sim_workers=2)
    four_envs = make_env("CartPole", 4).state_dict()
    with pytest.raises(ValueError, match="env state of Cartpole with 4 envs cannot be loaded into Cartpole with 2"):
        two.load_state_dict({"sim_workers": 2, "shards": [four_envs, four_envs]})


def test_steps_of_a_horizon_that_clear_grad_ended_are_not_differentiated():
    env = make_env("CartPole", 4, sim_workers=2)
    env.reset()
    _, reward, *_ = env.step(torch.zeros(4, 1, requires_grad=True))
    env.clear_grad()
    with pytest.raises(RuntimeError, match="differentiate a horizon before starting the next"):
        reward.sum().backward()


def test_the_simulations_processes_end_with_their_env():
    env = make_env("CartPole", 4, sim_workers=2)
    processes = env.processes
    assert all(process.is_alive() for process in processes)
    del env
    gc.collect()
    for process in processes:
        process.join(timeout=30)
    assert not any(process.is_alive() for process in processes)
