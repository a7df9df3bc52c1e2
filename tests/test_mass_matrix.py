"""envs/dflex_integrator.py: the mass matrix's products P = M J (from the bodies' spatial inertias, without
building M) and H = J^T P (without J's zeros) give the same floats as Rewarped's kernels, forward and backward."""
import numpy as np
import pytest
import warp as wp
from helpers import assert_same_horizon, random_actions, rollout
from rewarped.warp import integrator_featherstone as fs

from envs import dflex_integrator, make_env


def dense_spatial_mass_gemm(dim, sizes, body_I_s, J, P, device):
    """`spatial_mass_gemm` by Rewarped's kernels: M by `eval_rigid_mass`, then the dense product."""
    articulation_start, rows, cols, start = sizes
    M_start = np.concatenate([[0], np.cumsum(rows.numpy().astype(np.int64) ** 2)])
    M = wp.zeros(int(M_start[-1]), dtype=float, device=device, requires_grad=True)
    M_start = wp.array(M_start[:-1].astype(np.int32), dtype=int, device=device)
    wp.launch(fs.eval_rigid_mass, dim=dim, device=device, inputs=[articulation_start, M_start, body_I_s], outputs=[M])
    wp.launch(fs.eval_dense_gemm_batched, dim=dim, device=device,
              inputs=[rows, cols, rows, False, False, M_start, start, start, M, J], outputs=[P])


def dense_transposed_gemm(dim, sizes, A, B, C, device):
    """`transposed_gemm` by Rewarped's dense kernel."""
    m, n, p, a, b, c = sizes
    wp.launch(fs.eval_dense_gemm_batched, dim=dim, device=device, inputs=[m, n, p, True, False, a, b, c, A, B],
              outputs=[C])


DENSE = {"spatial_mass_gemm": dense_spatial_mass_gemm, "transposed_gemm": dense_transposed_gemm}


@pytest.mark.parametrize("env_id", ["Hopper", "Ant"])
@pytest.mark.parametrize("product", DENSE)
def test_a_horizon_with_resets_is_bit_identical_to_rewarpeds_kernels(env_id, product, monkeypatch):
    """Observations, rewards, episode ends, final observations and action-gradients over 20 steps in which every
    env reaches its 12-step time limit and resets, with one of the two products by Rewarped's kernels."""
    results, dense_calls = [], []
    for dense in (True, False):
        env = make_env(env_id, 3, seed=5, episode_length=12)
        def dense_product(*args):
            dense_calls.append(args)
            DENSE[product](*args)

        if dense:
            monkeypatch.setattr(dflex_integrator, product, dense_product)
        env.reset()
        results.append(rollout(env, random_actions(env, 20, seed=1)))
        monkeypatch.undo()
    assert len(dense_calls) >= 20  # the dense run took Rewarped's kernels at least once a step
    assert_same_horizon(*results)


def random_floats(rng, size, zeros=0.0):
    """Standard normal float32s, a fraction `zeros` of them zeros of either sign."""
    x = rng.standard_normal(size).astype(np.float32)
    where = rng.random(size) < zeros
    x[where] = np.where(rng.random(where.sum()) < 0.5, 0.0, -0.0)
    return x


@pytest.mark.parametrize("product", DENSE)
def test_the_product_and_its_adjoints_are_rewarpeds_bit_for_bit(product):
    """On 5 random articulations of 9 bodies and 14 degrees of freedom (J 54 x 14, 40 % zeros of either sign),
    the adjoints added to nonzero ones already in the inputs' gradients: the product and the inputs' gradients
    equal those of Rewarped's kernels."""
    rng = np.random.default_rng(0)
    batch, bodies, dofs = 5, 9, 14
    rows = 6 * bodies
    ints = lambda values: wp.array(np.asarray(values, dtype=np.int32), dtype=int)
    if product == "spatial_mass_gemm":
        sizes = [ints(np.arange(batch + 1) * bodies), ints([rows] * batch), ints([dofs] * batch),
                 ints(np.arange(batch) * rows * dofs)]
        inputs = [(random_floats(rng, (batch * bodies, 6, 6)), wp.spatial_matrix),
                  (random_floats(rng, batch * rows * dofs, zeros=0.4), float)]
        output_size = batch * rows * dofs
    else:
        starts = [np.arange(batch) * size for size in (rows * dofs, rows * dofs, dofs * dofs)]
        sizes = [ints([dofs] * batch), ints([dofs] * batch), ints([rows] * batch), *map(ints, starts)]
        inputs = [(random_floats(rng, batch * rows * dofs, zeros=0.4), float),
                  (random_floats(rng, batch * rows * dofs), float)]
        output_size = batch * dofs * dofs
    input_grads = [random_floats(rng, values.shape) for values, _ in inputs]
    output_grad = random_floats(rng, output_size)
    results = []
    for gemm in (DENSE[product], getattr(dflex_integrator, product)):
        arrays = [wp.array(values, dtype=dtype, requires_grad=True) for values, dtype in inputs]
        for array, grad in zip(arrays, input_grads):
            array.grad.assign(grad)
        output = wp.zeros(output_size, dtype=float, requires_grad=True)
        tape = wp.Tape()
        with tape:
            gemm(batch, sizes, *arrays, output, "cpu")
        output.grad.assign(output_grad)
        tape.backward()
        results.append([x.numpy().view(np.uint32) for x in (output, *(array.grad for array in arrays))])
    for dense, ours in zip(*results, strict=True):
        np.testing.assert_array_equal(dense, ours)
