"""Your own env by import path (docs/env_contract.md): the pure-PyTorch pendulum of examples/pendulum.py in the four
scripts, its gradient against finite differences, the contract's one-line refusals, the scripts without Warp, and
the files the page says to copy."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import envs.checkpoint
import ppo_dflex
import rpo_continuous_dflex
import sapo_dflex
import shac_dflex
from envs import UsageError, make_env
from envs.gradcheck import gradient_check, tolerance
from examples.pendulum import Pendulum

ROOT = Path(__file__).resolve().parent.parent
PENDULUM = "examples.pendulum:Pendulum"
SCRIPTS = [shac_dflex, sapo_dflex, rpo_continuous_dflex, ppo_dflex]


def pendulum_args(script, exp_name, **overrides):
    """Four iterations of 8 envs x 8 steps on the pendulum, episodes of 12 steps, small networks."""
    settings = dict(env_id=PENDULUM, num_envs=8, horizon=8, total_timesteps=256, episode_length=12, seed=4,
                    actor_hidden=(16, 16), critic_hidden=(16, 16), cuda=False, save_model=True)
    if script is ppo_dflex:
        settings["minibatch_size"] = 32
    return script.Args(exp_name=exp_name, **{**settings, **overrides})


class Killed(Exception):
    """Stands for a SIGKILL right after a checkpoint was written."""


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_trains_on_your_own_env_and_resumes_it_bit_identically(script, tmp_path, monkeypatch, capsys):
    """Straight through, and killed after the checkpoint of iteration 2 then resumed from it: the same model and the
    same evaluation returns, so the env's state_dict carries its state and its random generator."""
    monkeypatch.chdir(tmp_path)
    straight_name, straight = script.main(pendulum_args(script, "straight"))
    save_if_due = envs.checkpoint.Checkpointer.save_if_due

    def killed_after_first_checkpoint(self, progress):
        save_if_due(self, progress)
        if progress["iteration"] == 2:
            raise Killed

    monkeypatch.setattr(envs.checkpoint.Checkpointer, "save_if_due", killed_after_first_checkpoint)
    with pytest.raises(Killed):
        script.main(pendulum_args(script, "resumed", checkpoint_every=2))
    monkeypatch.setattr(envs.checkpoint.Checkpointer, "save_if_due", save_if_due)
    (checkpoint,) = tmp_path.glob("runs/*resumed*/checkpoint.pt")
    capsys.readouterr()
    resumed_name, resumed = script.main(pendulum_args(script, "resumed", checkpoint_every=2, resume=str(checkpoint)))
    assert "(resumed after iteration 2 of 4)" in capsys.readouterr().out  # iterations 3 and 4 only
    assert resumed == straight
    models = [torch.load(f"runs/{name}/{name.split('__')[1]}.model", weights_only=True)
              for name in (straight_name, resumed_name)]
    assert all(torch.equal(models[0]["actor"][key], value) for key, value in models[1]["actor"].items())


def test_your_own_env_passes_the_gradient_check_and_a_broken_gradient_fails_it(monkeypatch):
    """`python -m envs.gradcheck` on the pendulum: BPTT's dR/da_0 equals the finite differences over K = 1, 3, 10
    steps. With the reward's dependence on the angular velocity cut from the graph, it does not."""
    for steps in (1, 3, 10):
        for start in (0, 1):
            (row,) = gradient_check(PENDULUM, steps, start)
            assert row["spread"] < 0.01 and row["error"] < tolerance(steps), (steps, start, row)
    step = Pendulum.step

    def step_with_a_cut_gradient(self, actions):
        omega = self.omega
        result = step(self, actions)
        self.omega = self.omega.detach() + 0 * omega.sum()  # the reward of the next step loses omega's path
        return result

    monkeypatch.setattr(Pendulum, "step", step_with_a_cut_gradient)
    (row,) = gradient_check(PENDULUM, 10, 0)
    assert row["error"] > 0.2, row


def pendulum_without(name):
    """The pendulum's class without one of its methods."""
    return type(f"PendulumWithout_{name}", (), {key: value for key, value in vars(Pendulum).items() if key != name})


NoClearGrad, NoRender = pendulum_without("clear_grad"), pendulum_without("render")


class ColumnReward(Pendulum):
    def step(self, actions):
        obs, reward, terminated, truncated, info = super().step(actions)
        return obs, reward[:, None], terminated, truncated, info


class DetachedReward(Pendulum):
    def step(self, actions):
        obs, reward, terminated, truncated, info = super().step(actions)
        return obs, reward.detach(), terminated, truncated, info


@pytest.mark.parametrize("env_id, options, message", [
    ("examples.nowhere:Pendulum", {}, "--env-id examples.nowhere:Pendulum: cannot import examples.nowhere"),
    ("examples.pendulum:Pendulm", {}, "examples.pendulum has no class or function 'Pendulm'"),
    ("test_env_contract:NoClearGrad", {}, "the env has no clear_grad"),
    ("test_env_contract:ColumnReward", {}, r"reward must be a torch.float32 tensor of shape \(4,\), got \(4, 1\)"),
    ("test_env_contract:DetachedReward", {}, "step\\(\\)'s reward carries no gradient to the action"),
    ("test_env_contract:NoRender", {"render": True}, "the env has no render"),
    (PENDULUM, {"sim_workers": 2}, "sim_workers applies to the built-in Warp tasks only"),
])
def test_an_env_that_breaks_the_contract_is_refused_naming_the_missing_piece(env_id, options, message):
    with pytest.raises(UsageError, match=message) as error:
        make_env(env_id, 4, **options)
    assert "\n" not in str(error.value)


def test_a_reward_without_gradient_is_fine_where_nothing_is_backpropagated():
    """PPO builds its env without gradients: the same env passes the contract there."""
    assert make_env("test_env_contract:DetachedReward", 4, requires_grad=False).num_envs == 4


def test_your_own_env_makes_a_video_through_its_render(tmp_path):
    """--capture-video's wrapper on the pendulum: one decoded frame per step, at its render_fps, the rods moving."""
    import imageio.v2 as imageio

    from envs.wrappers import RecordVideo

    recording = RecordVideo(make_env(PENDULUM, 2, render=True), str(tmp_path / "pendulum.mp4"))
    recording.reset()
    for _ in range(10):
        recording.step(torch.ones(2, 1))
    recording.close()
    reader = imageio.get_reader(str(tmp_path / "pendulum.mp4"))
    frames = [frame.astype(float) for frame in reader]
    assert reader.get_meta_data()["fps"] == 20 and len(frames) == 10
    assert all((a - b).std() > 0 for a, b in zip(frames, frames[1:]))  # the rods move in every frame


def test_the_contract_check_leaves_no_trace():
    """The probe step is undone: the checked env starts where an unchecked one of the same seed does."""
    checked, fresh = make_env(PENDULUM, 5, seed=7), Pendulum(5, seed=7)
    assert torch.equal(checked.reset(), fresh.reset())


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_command_line_refuses_a_broken_env_in_one_line_before_any_run_directory(script, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / script.SCRIPT), "--env-id", "examples.pendulum:Nothing"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "error: --env-id examples.pendulum:Nothing: examples.pendulum has no class or function 'Nothing'"]
    assert not (tmp_path / "runs").exists()


BLOCK_WARP = "import sys; sys.modules['warp'] = sys.modules['rewarped'] = None; "
TWO_ITERATIONS = ["--env-id", PENDULUM, "--num-envs", "4", "--horizon", "8", "--total-timesteps", "64",
                  "--actor-hidden", "16", "16", "--critic-hidden", "16", "16"]


def run_without_warp(cwd, script, *argv):
    """`script` run as __main__, its folder first on the path as `python script` has it, in a Python in which
    `import warp` and `import rewarped` fail; nothing else of the repository is on the path."""
    script = str(script)
    code = BLOCK_WARP + (f"sys.path.insert(0, {os.path.dirname(script)!r}); sys.argv = {[script, *argv]!r}; "
                         f"import runpy; runpy.run_path({script!r}, run_name='__main__')")
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=environment)


def test_rpo_runs_on_your_own_env_where_warp_cannot_be_imported(tmp_path):
    result = run_without_warp(tmp_path, ROOT / "rpo_continuous_dflex.py", *TWO_ITERATIONS)
    assert result.returncode == 0 and "eval: deterministic_return=" in result.stdout, result.stderr[-2000:]
    # the block has power: a Warp task cannot be built there
    result = run_without_warp(tmp_path, ROOT / "rpo_continuous_dflex.py", "--env-id", "CartPole")
    assert result.returncode != 0 and "import of warp halted" in result.stderr, result.stderr[-2000:]


def files_to_copy():
    """The files that docs/env_contract.md lists under "Copying RPO into your project"."""
    page = (ROOT / "docs" / "env_contract.md").read_text()
    section = page.split("## Copying RPO into your project", 1)[1]
    block = re.search(r"```text\n(.*?)```", section, re.DOTALL).group(1)
    return block.split()


def test_the_files_the_docs_list_are_all_rpo_needs_on_your_own_env(tmp_path):
    files = files_to_copy()
    assert "rpo_continuous_dflex.py" in files and "envs/diff_env.py" not in files
    for name in files + ["examples/pendulum.py"]:  # the example stands for your own env
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    result = run_without_warp(tmp_path, tmp_path / "rpo_continuous_dflex.py", *TWO_ITERATIONS)
    assert result.returncode == 0 and "iteration 2/2" in result.stdout, result.stderr[-2000:]
