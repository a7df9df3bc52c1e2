"""envs/dflex_integrator.py: the mass matrix's product P = M J over M's 6 x 6 diagonal blocks gives the same
horizon as Rewarped's dense product, bit for bit, forward and backward."""
import pytest
import warp as wp
from helpers import assert_same_horizon, random_actions, rollout
from rewarped.warp import integrator_featherstone as fs

from envs import make_env
from envs.dflex_integrator import eval_block_diagonal_gemm_batched


@pytest.mark.parametrize("env_id", ["Hopper", "Ant"])
def test_a_horizon_with_resets_is_bit_identical_to_the_dense_product(env_id, monkeypatch):
    """Observations, rewards, episode ends, final observations and action-gradients over 20 steps in which every
    env reaches its 12-step time limit and resets."""
    results, dense_launches = [], []
    for dense in (True, False):
        env = make_env(env_id, 3, seed=5, episode_length=12)
        launch = wp.launch

        def dense_launch(kernel, dim, inputs=(), outputs=(), **kwargs):
            if kernel is eval_block_diagonal_gemm_batched:  # the same product through Rewarped's dense kernel
                rows, cols, a, b, c, A, B = inputs
                dense_launches.append(kernel)
                return launch(fs.eval_dense_gemm_batched, dim, inputs=[rows, cols, rows, False, False, a, b, c, A, B],
                              outputs=outputs, **kwargs)
            return launch(kernel, dim, inputs=inputs, outputs=outputs, **kwargs)

        if dense:
            monkeypatch.setattr(wp, "launch", dense_launch)
        env.reset()
        results.append(rollout(env, random_actions(env, 20, seed=1)))
        monkeypatch.setattr(wp, "launch", launch)
    assert len(dense_launches) >= 20  # the dense run took the dense product at least once a step
    assert_same_horizon(*results)
