"""envs/dflex_integrator.py: the mass matrix's products P = M J over M's 6 x 6 diagonal blocks and H = J^T P
without J's zeros give the same horizon as Rewarped's dense product, bit for bit, forward and backward."""
import numpy as np
import pytest
import warp as wp
from helpers import assert_same_horizon, random_actions, rollout
from rewarped.warp import integrator_featherstone as fs

from envs import dflex_integrator, make_env
from envs.dflex_integrator import eval_block_diagonal_gemm_batched, transposed_gemm


def dense_transposed_gemm(dim, sizes, A, B, C, device):
    """`transposed_gemm` by Rewarped's dense kernel, its adjoint Warp's generated one."""
    m, n, p, a, b, c = sizes
    wp.launch(fs.eval_dense_gemm_batched, dim=dim, device=device, inputs=[m, n, p, True, False, a, b, c, A, B],
              outputs=[C])


@pytest.mark.parametrize("env_id", ["Hopper", "Ant"])
@pytest.mark.parametrize("product", ["P = M J", "H = J^T P"])
def test_a_horizon_with_resets_is_bit_identical_to_the_dense_product(env_id, product, monkeypatch):
    """Observations, rewards, episode ends, final observations and action-gradients over 20 steps in which every
    env reaches its 12-step time limit and resets, with one of the two products through the dense kernel."""
    results, dense_products = [], []
    for dense in (True, False):
        env = make_env(env_id, 3, seed=5, episode_length=12)
        launch = wp.launch

        def dense_launch(kernel, dim, inputs=(), outputs=(), **kwargs):
            if kernel is eval_block_diagonal_gemm_batched:  # the same product through Rewarped's dense kernel
                rows, cols, a, b, c, A, B = inputs
                dense_products.append(kernel)
                return launch(fs.eval_dense_gemm_batched, dim, inputs=[rows, cols, rows, False, False, a, b, c, A, B],
                              outputs=outputs, **kwargs)
            return launch(kernel, dim, inputs=inputs, outputs=outputs, **kwargs)

        def dense_transposed(*args):
            dense_products.append(args)
            dense_transposed_gemm(*args)

        if dense and product == "P = M J":
            monkeypatch.setattr(wp, "launch", dense_launch)
        if dense and product == "H = J^T P":
            monkeypatch.setattr(dflex_integrator, "transposed_gemm", dense_transposed)
        env.reset()
        results.append(rollout(env, random_actions(env, 20, seed=1)))
        monkeypatch.undo()
    assert len(dense_products) >= 20  # the dense run took the dense product at least once a step
    assert_same_horizon(*results)


def test_the_transposed_product_and_its_adjoints_are_the_dense_kernels_bit_for_bit():
    """C = A^T B on random 54 x 14 matrices, 40 % of A's entries zeros of either sign, the adjoints added to
    nonzero ones already in A's and B's gradients: C and A's and B's gradients equal the dense kernel's."""
    rng = np.random.default_rng(0)
    batch, rows, cols = 5, 54, 14
    A = rng.standard_normal(batch * rows * cols).astype(np.float32)
    zeros = rng.random(A.size) < 0.4
    A[zeros] = np.where(rng.random(zeros.sum()) < 0.5, 0.0, -0.0)
    B, adj_A, adj_B = (rng.standard_normal(A.size).astype(np.float32) for _ in range(3))
    adj_C = rng.standard_normal(batch * cols * cols).astype(np.float32)
    sizes = [wp.array(np.full(batch, size, np.int32), dtype=int) for size in (cols, cols, rows)]
    sizes += [wp.array(np.arange(batch, dtype=np.int32) * size, dtype=int) for size in (rows * cols,) * 2 + (cols * cols,)]
    results = []
    for gemm in (dense_transposed_gemm, transposed_gemm):
        arrays = [wp.array(x, dtype=float, requires_grad=True) for x in (A, B)]
        C = wp.zeros(adj_C.size, dtype=float, requires_grad=True)
        arrays[0].grad.assign(adj_A)
        arrays[1].grad.assign(adj_B)
        tape = wp.Tape()
        with tape:
            gemm(batch, sizes, *arrays, C, "cpu")
        C.grad.assign(adj_C)
        tape.backward()
        results.append([x.numpy().view(np.uint32) for x in (C, arrays[0].grad, arrays[1].grad)])
    for dense, ours in zip(*results, strict=True):
        np.testing.assert_array_equal(dense, ours)
