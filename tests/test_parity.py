"""The paper's tasks follow AHAC's DFlex: trajectories against DFlex's own (tests/data, recorded by
benchmark/dflex_reference.py), and each dynamics item on its own, so that a failure names the item."""
import math
import os

import numpy as np
import pytest
import torch
import warp as wp

from envs import make_env
from envs.dflex_integrator import dflex_ground_contact, dflex_joint_drive

DATA = os.path.join(os.path.dirname(__file__), "data")


def reference(env_id):
    return np.load(os.path.join(DATA, f"dflex_{env_id.lower()}.npz"))


def replay(env_id, ref, requires_grad):
    """Our env from DFlex's recorded start states through its recorded actions: (joint_q, reward, obs) per step."""
    n = ref["start_joint_q"].shape[0]
    env = make_env(env_id, n, requires_grad=requires_grad, episode_length=10_000)
    env.task.early_termination = False  # the recording ran without terminations
    with torch.no_grad():
        env.task.state.joint_q.copy_(torch.from_numpy(ref["start_joint_q"]).flatten())
        env.task.state.joint_qd.copy_(torch.from_numpy(ref["start_joint_qd"]).flatten())
    env.clear_grad()
    joint_q, rewards, observations = [], [], []
    for actions in ref["actions"]:
        obs, reward, _, _, _ = env.step(torch.from_numpy(actions))
        joint_q.append(env.task.state.joint_q.view(n, -1).detach().clone())
        rewards.append(reward.detach().clone())
        observations.append(obs.detach().clone())
    return torch.stack(joint_q).numpy(), torch.stack(rewards).numpy(), torch.stack(observations).numpy()


# measured largest differences over 100 steps: Ant joint_q 1.1e-4, reward 1.7e-5 (|reward| < 3);
# Hopper joint_q 1.6e-5, reward 1.0e-3 (|reward| up to 39: its height term is -200 h^2);
# Humanoid joint_q 1.1e-4, reward 6.1e-3 (|reward| up to 109); Anymal joint_q 7.3e-6, reward 1.3e-5
TOLERANCES = {"Ant": (1e-3, 1e-4), "Hopper": (1e-4, 5e-3), "Humanoid": (1e-3, 3e-2), "Anymal": (1e-4, 1e-4)}
LAST_ACTION_START = {"Ant": 29, "Humanoid": 55, "Anymal": 37}


@pytest.mark.parametrize("requires_grad", [True, False])
@pytest.mark.parametrize("env_id", sorted(TOLERANCES))
def test_task_follows_dflex_for_100_steps(env_id, requires_grad):
    """Same start states (DFlex's random ones) and random actions: joint positions and rewards within the
    tolerances above over 100 steps. The observation matches too; its last-action part (Ant, Humanoid, Anymal) is
    DFlex's: 0 in its gradient mode, the clipped action in its no-gradient mode."""
    ref = reference(env_id)
    joint_q, rewards, obs = replay(env_id, ref, requires_grad)
    q_tolerance, reward_tolerance = TOLERANCES[env_id]
    assert np.abs(joint_q - ref["joint_q"]).max() < q_tolerance
    assert np.abs(rewards - ref["reward"]).max() < reward_tolerance
    ref_obs = ref["obs"] if requires_grad else ref["obs_no_grad"]
    assert np.abs(obs - ref_obs).max() < 1e-2
    if env_id in LAST_ACTION_START:
        start = LAST_ACTION_START[env_id]
        np.testing.assert_allclose(obs[:, :, start:], ref_obs[:, :, start:], atol=1e-6)  # DFlex: (s a) / s


@pytest.mark.parametrize("env_id", sorted(TOLERANCES))
def test_masses_and_inertias_are_dflexs(env_id):
    """DFlex's masses and its inertias, which differ from a proper rotation of the shapes' inertias, body by
    body among the bodies that have mass (DFlex keeps a massless body per fixed URDF joint; Warp merges it
    into its parent)."""
    ref = reference(env_id)
    model = make_env(env_id, 1, requires_grad=False).task.model
    mass, ref_mass = model.body_mass.numpy(), ref["body_mass"]
    np.testing.assert_allclose(mass[mass > 0], ref_mass[ref_mass > 0], rtol=1e-6)
    np.testing.assert_allclose(model.body_inertia.numpy()[mass > 0], ref["body_inertia"][ref_mass > 0], rtol=1e-5,
                               atol=1e-6)


def test_ant_weighs_182_kg_and_rewarpeds_117():
    """Warp's MJCF parser reads ant.xml's default density 5 for the torso sphere; DFlex ignores it."""
    assert make_env("Ant", 1, requires_grad=False).task.model.body_mass.numpy().sum() == pytest.approx(182.18, abs=0.01)
    rewarped = make_env("RewarpedAnt", 1, requires_grad=False).task.model
    assert rewarped.body_mass.numpy().sum() == pytest.approx(117.05, abs=0.01)


def test_ant_joints_and_contacts_are_dflexs():
    task = make_env("Ant", 1, requires_grad=False).task
    model, integrator = task.model, task.integrator
    np.testing.assert_allclose(model.joint_armature.numpy(), [0.0] * 6 + [0.05] * 8)
    np.testing.assert_allclose(integrator.damping.numpy(), [11.0] * 8)  # damping 1 + always-on limit_kd 10
    np.testing.assert_allclose(integrator.stiffness.numpy(), [0.0] * 8)
    np.testing.assert_allclose(model.joint_limit_ke.numpy(), [1.0e3] * 8)
    np.testing.assert_allclose(model.joint_limit_kd.numpy(), [0.0] * 8)  # Warp's limit damping: off
    # ground only: no shape pairs, Warp's ground plane off, 25 DFlex points (sphere + 12 capsules x 2 ends)
    assert model.shape_contact_pair_count == 0 and not model.ground
    assert len(integrator.contact_body) == 25
    np.testing.assert_allclose(integrator.contact_material.numpy(), [[4.0e4, 1.0e4, 3.0e3, 0.75]] * 25)


def test_hopper_joints_and_contacts_are_dflexs():
    task = make_env("Hopper", 1, requires_grad=False).task
    model, integrator = task.model, task.integrator
    np.testing.assert_allclose(model.joint_armature.numpy(), [1.0] * 6)
    # root slides and hinge: MJCF damping 0; leg hinges: DFlex's damping 2; all: always-on limit_kd 10
    np.testing.assert_allclose(integrator.damping.numpy(), [10.0, 10.0, 10.0, 12.0, 12.0, 12.0])
    np.testing.assert_allclose(model.joint_limit_kd.numpy(), [0.0] * 6)
    assert integrator.update_mass_matrix_every == 4  # AHAC's MM_caching_frequency for Hopper
    assert model.shape_contact_pair_count == 0 and not model.ground
    assert len(integrator.contact_body) == 8  # four capsules, two ends each
    np.testing.assert_allclose(integrator.contact_material.numpy(), [[2.0e4, 2.0e3, 1.0e3, 0.9]] * 8)


def test_humanoid_joints_and_contacts_are_dflexs():
    """One hinge per body (22 bodies, 21 hinges), each with its spring and damping plus limit damping 10."""
    task = make_env("Humanoid", 1, requires_grad=False).task
    model, integrator = task.model, task.integrator
    assert model.body_count == 22 and set(model.joint_type.numpy()[1:]) == {wp.sim.JOINT_REVOLUTE}
    abdomen_z, knee = 0, 6  # MJCF: stiffness 20, damping 5; no values (the file's defaults 5 and 0.1)
    assert integrator.stiffness.numpy()[[abdomen_z, knee]] == pytest.approx([20.0, 5.0])
    assert integrator.damping.numpy()[[abdomen_z, knee]] == pytest.approx([15.0, 10.1])
    np.testing.assert_allclose(model.joint_limit_kd.numpy(), 0.0)
    assert model.shape_contact_pair_count == 0 and not model.ground
    np.testing.assert_allclose(np.unique(integrator.contact_material.numpy(), axis=0), [[2.0e4, 2.0e3, 1.0e3, 0.75]])


def test_anymal_joints_and_contacts_are_dflexs():
    """anymal_minimal.urdf's shapes and joints: 37.25 kg, no joint limits, tau = 200 a - 85 q - (2 + 10) qd."""
    task = make_env("Anymal", 1, requires_grad=False).task
    model, integrator = task.model, task.integrator
    assert model.body_mass.numpy().sum() == pytest.approx(37.2509, abs=1e-3)
    np.testing.assert_allclose(model.joint_armature.numpy(), [0.0] * 6 + [0.006] * 12)
    np.testing.assert_allclose(integrator.stiffness.numpy(), [85.0] * 12)
    np.testing.assert_allclose(integrator.damping.numpy(), [12.0] * 12)
    assert (model.joint_limit_lower.numpy() <= -1e3).all() and (model.joint_limit_upper.numpy() >= 1e3).all()
    assert task.action_scale == 200.0 and integrator.update_mass_matrix_every == 16
    assert model.shape_contact_pair_count == 0 and not model.ground
    assert len(integrator.contact_body) == 2 + 4 * 2 + 4  # base and knee-drive capsules (2 ends each), feet
    np.testing.assert_allclose(integrator.contact_material.numpy(), [[2.0e3, 5.0e2, 1.0e2, 0.75]] * 14)


def test_ant_start_noise_draws_the_root_twist_directly():
    """DFlex draws every start velocity in ±0.25, the root's linear one as a twist about the origin; Rewarped's
    Ant draws the COM's and converts it, which adds pos x w (up to about 0.19 at the 0.75 m start height)."""
    def start_velocities(env_id):
        env = make_env(env_id, 256, requires_grad=False)
        env.reset()
        return env.task.state.joint_qd.view(256, -1)

    ours = start_velocities("Ant")
    assert ours.abs().max() <= 0.25 and ours.abs().max() > 0.24  # uniform in ±0.25, 256 x 14 draws
    assert start_velocities("RewarpedAnt")[:, 3:6].abs().max() > 0.3


def test_ant_rewards_the_state_before_the_step():
    """DFlex's reward for a step reads the observation the action was taken in; termination the one after."""
    env = make_env("Ant", 3, requires_grad=False)
    obs = env.reset()
    _, reward, _, _, _ = env.step(torch.zeros(3, 8))
    expected = obs[:, 5] + 0.1 * obs[:, 27] + obs[:, 28] + obs[:, 0] - env.task.termination_height
    torch.testing.assert_close(reward, expected)


@pytest.mark.parametrize("requires_grad, last_action_obs, shown", [
    (True, None, False), (False, None, True), (True, True, True), (False, False, False)])
def test_ant_last_action_observation(requires_grad, last_action_obs, shown):
    env = make_env("Ant", 2, requires_grad=requires_grad, last_action_obs=last_action_obs)
    env.reset()
    actions = torch.full((2, 8), 0.5)
    obs, _, _, _, _ = env.step(actions)
    torch.testing.assert_close(obs[:, 29:].detach(), actions if shown else torch.zeros_like(actions))


def test_last_action_obs_is_refused_where_it_does_not_apply():
    with pytest.raises(ValueError, match="last_action_obs applies to Ant, Humanoid, Anymal only"):
        make_env("CartPole", 1, last_action_obs=True)


def launch_contact(position, twist, radius, material, up=(0.0, 1.0, 0.0)):
    """DFlex's contact kernel on one body at `position` (identity rotation) with one contact point at its
    origin; returns the wrench (torque, force) it adds to the body."""
    body_f = wp.zeros(1, dtype=wp.spatial_vector)
    wp.launch(dflex_ground_contact, dim=1, inputs=[
        wp.array([wp.transform(wp.vec3(*position), wp.quat_identity())], dtype=wp.transform),
        wp.array([wp.spatial_vector(*twist)], dtype=wp.spatial_vector),
        wp.array([0], dtype=int), wp.array([wp.vec3(0.0)], dtype=wp.vec3), wp.array([radius], dtype=float),
        wp.array([wp.vec4(*material)], dtype=wp.vec4), wp.vec3(*up)], outputs=[body_f])
    return body_f.numpy()[0]


@pytest.mark.parametrize("slip", [0.01, 2.0])  # friction below its cap, and at it
def test_dflex_contact_force_on_a_hand_built_penetration(slip):
    """A sphere (r = 0.1) 2 cm into the ground, sinking at 0.5 m/s and sliding at `slip` m/s along x.
    DFlex: normal ke d + kd d (-v_n), friction -min(kf |v_t|, mu ke d) along v_t, torque p x f; here in
    Featherstone's sign convention (body_f holds minus the external wrench)."""
    ke, kd, kf, mu, depth = 4.0e4, 1.0e4, 3.0e3, 0.75, 0.02
    p = np.array([0.0, 0.1 - depth - 0.1, 0.0])  # the contact point: centre minus radius along the normal
    wrench = launch_contact((0.0, 0.1 - depth, 0.0), (0.0, 0.0, 0.0, slip, -0.5, 0.0), 0.1, (ke, kd, kf, mu))
    external = np.array([-min(kf * slip, mu * ke * depth), ke * depth + kd * depth * 0.5, 0.0])
    np.testing.assert_allclose(wrench[3:], -external, rtol=1e-5)
    np.testing.assert_allclose(wrench[:3], np.cross(p, -external), rtol=1e-5, atol=1e-6)


def test_dflex_contact_is_zero_above_the_ground_and_uses_the_up_axis():
    assert not launch_contact((0.0, 0.11, 0.0), (0.0,) * 6, 0.1, (4e4, 1e4, 3e3, 0.75)).any()
    z_up = launch_contact((0.0, 0.0, 0.09), (0.0,) * 6, 0.1, (4e4, 0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0))
    np.testing.assert_allclose(z_up[3:], [0.0, 0.0, -4e4 * 0.01], rtol=1e-5)


def test_dflex_joint_drive_on_a_hand_built_state():
    """tau = act - ke (q - target) - (kd + limit_kd) qd, per joint axis, read at the axis's own coordinates."""
    act, q, qd = [10.0, -5.0], [0.3, 0.0, 0.0, -0.2], [0.0, 2.0, 0.0, -1.0]
    out = wp.zeros(2, dtype=float)
    wp.launch(dflex_joint_drive, dim=2, inputs=[
        wp.array(act, dtype=float), wp.array(q, dtype=float), wp.array(qd, dtype=float),
        wp.array([0, 3], dtype=int), wp.array([1, 3], dtype=int), wp.array([0.1, 0.0], dtype=float),
        wp.array([20.0, 0.0], dtype=float), wp.array([11.0, 12.0], dtype=float)], outputs=[out])
    np.testing.assert_allclose(out.numpy(), [10.0 - 20.0 * 0.2 - 11.0 * 2.0, -5.0 - 12.0 * -1.0], rtol=1e-6)


def test_dflex_inertia_keeps_only_diagonals():
    """One capsule along (1, 1, 0)/sqrt2 (r = 0.08, 0.2 long, density 1000): DFlex's inertia is
    diag(Ib/2, Ia/2, Ia) with Ib, Ia its principal moments (along and across), not the rotated tensor."""
    from envs.dflex_inertia import set_dflex_inertia

    builder = wp.sim.ModelBuilder()
    body = builder.add_body()
    r, half = 0.08, 0.1
    builder.add_shape_capsule(body, radius=r, half_height=half, density=1000.0,
                              rot=wp.quat_from_axis_angle(wp.vec3(0.0, 0.0, 1.0), -math.pi / 4))  # y -> (1,1,0)
    set_dflex_inertia(builder, density=1000.0)
    length = 2 * half
    ms, mc = 1000 * 4 / 3 * math.pi * r**3, 1000 * math.pi * r * r * length
    along = (0.5 * mc + 0.4 * ms) * r * r
    across = mc * (0.25 * r * r + length**2 / 12) + ms * (0.4 * r * r + 0.375 * r * length + 0.25 * length**2)
    np.testing.assert_allclose(np.array(builder.body_inertia[0]).reshape(3, 3), np.diag([along / 2, across / 2, across]),
                               rtol=1e-5, atol=1e-9)
    assert builder.body_mass[0] == pytest.approx(ms + mc)
