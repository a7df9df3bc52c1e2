"""Simulation gradients agree with finite differences (`envs.gradcheck`), and the Featherstone fix behind that."""
import pytest
import warp as wp

from envs.dflex_integrator import DFlexIntegrator
from envs.featherstone_fix import FeatherstoneIntegrator
from envs.gradcheck import gradient_check, main, tolerance

from rewarped.warp.model_monkeypatch import Model_state

STARTS = (1, 2)  # docs/gradients.md's re-check uses other start states (3, 4, 5)


# Ant scores each step from the state before it (DFlex), so its 1-step return does not depend on the action:
# its shortest check is K = 2.
@pytest.mark.parametrize("env_id, steps", [(env_id, steps) for env_id in ["CartPole", "Hopper", "Anymal", "Humanoid"]
                                           for steps in (1, 3)] + [("Ant", 2), ("Ant", 3)])
def test_bptt_gradient_of_the_k_step_return_matches_finite_differences(env_id, steps):
    """Every action dimension whose finite difference is stable across h agrees with BPTT within 2 % (K = 1)
    or 5 % (K > 1), from two start states. Before the Featherstone fix Anymal was off by 12-56 %."""
    stable = []
    for start in STARTS:
        rows = gradient_check(env_id, steps, start)
        stable += [(start, d, r) for d, r in enumerate(rows) if r["spread"] <= 0.01]
    assert stable, "no stable dimension: the check would pass vacuously"
    errors = {(start, d): round(r["error"], 4) for start, d, r in stable}
    assert max(errors.values()) <= tolerance(steps), errors


def scene(integrator_class, z0, ke=2.0e3, substeps=2, dt=1.0e-2):
    """A frictionless, undamped sphere (r = 0.1 m) on a free joint, its centre at height z0 < r, i.e. pressed
    into the ground, simulated for `substeps` substeps on a tape. Returns (tape, states, mass)."""
    builder = wp.sim.ModelBuilder(up_vector=(0.0, 0.0, 1.0))
    body = builder.add_body()
    builder.add_shape_sphere(body, radius=0.1, density=1000.0, ke=ke, kd=0.0, kf=0.0, mu=0.0)
    builder.add_joint_free(body)
    builder.set_ground_plane(ke=ke, kd=0.0, kf=0.0, mu=0.0)
    model = builder.finalize(requires_grad=True)
    model.ground = True
    integrator = integrator_class(model)
    states = [Model_state(model, integrator_type="featherstone") for _ in range(substeps + 1)]
    states[0].joint_q.assign([0.0, 0.0, z0, 0.0, 0.0, 0.0, 1.0])  # position, then quaternion (x, y, z, w)
    wp.sim.eval_fk(model, states[0].joint_q, states[0].joint_qd, None, states[0])
    tape = wp.Tape()
    with tape:
        for state_in, state_out in zip(states[:-1], states[1:]):
            state_in.clear_forces()
            wp.sim.collide(model, state_in)
            integrator.simulate(model, state_in, state_out, dt)
    return tape, states, model.body_mass.numpy()[0]


def d_final_vz_d_initial_z(integrator_class):
    tape, states, mass = scene(integrator_class, z0=0.09)
    seed = wp.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0], dtype=wp.float32)  # joint_qd = (angular, linear): v_z
    tape.backward(grads={states[-1].joint_qd: seed})
    return tape.gradients[states[0].joint_q].numpy()[2], mass


def test_featherstone_counts_the_contact_adjoint_once():
    """Two semi-implicit substeps with contact force ke·(r - z): v1 = v0 + dt(f(z0)/m - g), z1 = z0 + dt v1,
    v2 = v1 + dt(f(z1)/m - g), so dv2/dz0 = -(dt ke/m)(2 - dt² ke/m). Warp's own integrator counts the second
    substep's contact term twice."""
    ke, dt = 2.0e3, 1.0e-2
    ours, mass = d_final_vz_d_initial_z(FeatherstoneIntegrator)
    c = dt * ke / mass
    assert ours == pytest.approx(-c * (2 - dt * c), rel=1e-4)
    rewarpeds, _ = d_final_vz_d_initial_z(FeatherstoneIntegrator.__bases__[0])
    assert rewarpeds == pytest.approx(-c * (3 - 2 * dt * c), rel=1e-4)


def test_dflex_step_counts_the_contact_adjoint_once():
    """The same scene through DFlex's substep (own ground contact, same law without damping and friction)."""
    ke, dt = 2.0e3, 1.0e-2
    ours, mass = d_final_vz_d_initial_z(lambda model: DFlexIntegrator(model, [], [], []))
    c = dt * ke / mass
    assert ours == pytest.approx(-c * (2 - dt * c), rel=1e-4)


def test_gradcheck_exits_nonzero_on_a_wrong_gradient_and_zero_on_a_right_one(monkeypatch, capsys):
    """Rewarped's Ant runs on Warp's Featherstone step: with its double-counted contact adjoint back, one
    dimension is 6.3 % off at K = 3 (measured)."""
    assert main(["--env-id", "RewarpedAnt", "--steps", "3", "--starts", "1"]) == 0
    monkeypatch.setattr("envs.warp_env_fixes.FeatherstoneIntegrator", FeatherstoneIntegrator.__bases__[0])
    assert main(["--env-id", "RewarpedAnt", "--steps", "3", "--starts", "1"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_gradcheck_exits_nonzero_when_nothing_could_be_checked(capsys):
    """A warm-up longer than CartPole's 240-step episodes ends every window: no vacuous pass."""
    assert main(["--env-id", "CartPole", "--steps", "1", "--starts", "0", "--warmup", "300"]) == 1
    assert "nothing checked" in capsys.readouterr().out
