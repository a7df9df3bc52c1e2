"""envs/warp_launch.py: Warp's CPU kernel launch without its per-call checks, and its adjoint packed when the launch
is recorded, give the same numbers as Warp's own launch and tape, and Warp's errors where an argument does not
match its kernel."""
import pytest
import warp as wp
from helpers import assert_same_horizon, random_actions, rollout

from envs import make_env, warp_launch
from envs.warp_launch import launch


@pytest.mark.parametrize("env_id", ["CartPole", "Hopper", "Ant"])
def test_a_horizon_with_resets_is_bit_identical_to_warps_own_launch(env_id, monkeypatch):
    """Observations, rewards, episode ends, final observations and action-gradients over 20 steps in which
    every env reaches its 12-step time limit and resets, the backward pass included."""
    results, fallbacks, adjoint_launches, packed_adjoints = [], [], [], []
    warps_own, call = warp_launch._warp_launch, warp_launch._Adjoint.__call__
    for chosen in (warps_own, launch):
        env = make_env(env_id, 3, seed=5, episode_length=12)
        assert wp.launch is launch  # make_env installs it
        monkeypatch.setattr(wp, "launch", chosen)
        if chosen is launch:  # count what still goes through Warp's own launch and its tape's adjoint launches
            monkeypatch.setattr(warp_launch, "_warp_launch", lambda *args: fallbacks.append(warps_own(*args)))
            monkeypatch.setattr(wp, "launch", lambda kernel, *args, **kwargs: (
                adjoint_launches.append(kernel) if kwargs.get("adjoint") else None, launch(kernel, *args, **kwargs))[1])
            monkeypatch.setattr(warp_launch._Adjoint, "__call__", lambda self: (packed_adjoints.append(1), call(self)))
        env.reset()
        results.append(rollout(env, random_actions(env, 20, seed=1)))
    assert not fallbacks  # every launch of the horizon took the unchecked path
    # the backward pass ran the adjoints packed when recorded, and launched (Warp's tape) only kernels with a struct
    assert packed_adjoints
    assert all(any(isinstance(arg.type, wp.codegen.Struct) for arg in kernel.adj.args) for kernel in adjoint_launches)
    assert_same_horizon(*results)


def test_an_argument_that_does_not_match_its_kernel_gets_warps_error():
    @wp.kernel
    def scale(x: wp.array(dtype=float), y: wp.array(dtype=float)):
        i = wp.tid()
        y[i] = 2.0 * x[i]

    x, y = wp.array([1.0, 2.0], dtype=float, device="cpu"), wp.zeros(2, dtype=float, device="cpu")
    launch(scale, 2, inputs=[x], outputs=[y], device="cpu")
    assert y.numpy().tolist() == [2.0, 4.0]
    with pytest.raises(RuntimeError, match="argument 'x' expects an array with dtype"):
        launch(scale, 2, inputs=[wp.array([1, 2], dtype=int, device="cpu")], outputs=[y], device="cpu")
    with pytest.raises(RuntimeError, match="passed 1 arguments but kernel requires 2"):
        launch(scale, 2, inputs=[x], device="cpu")
