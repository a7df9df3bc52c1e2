"""`--capture-video`: MP4s of the final evaluation (envs/wrappers.py), rendered headless on the CPU (envs/render.py)."""
import importlib.util

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from helpers import random_actions

import envs.wrappers
import ppo_dflex
import rpo_continuous_dflex
import sapo_dflex
import shac_dflex
from envs import ENV_IDS, make_env
from envs.render import FrameRenderer
from envs.wrappers import RecordVideo

SCRIPTS = [shac_dflex, sapo_dflex, rpo_continuous_dflex, ppo_dflex]


@pytest.mark.parametrize("env_id", ["CartPole", "Ant"])
def test_a_recorded_video_decodes_with_one_moving_frame_per_step(env_id, tmp_path):
    env = make_env(env_id, 3, requires_grad=False)
    env.reset()
    path = str(tmp_path / "video.mp4")
    recording = RecordVideo(env, path)
    for actions in random_actions(env, 30, seed=1):
        recording.step(actions)
    recording.close()
    reader = imageio.get_reader(path)
    assert reader.get_meta_data()["fps"] == pytest.approx(1.0 / env.task.frame_dt)
    frames = np.stack([frame for frame in reader]).astype(np.float32)
    assert frames.shape == (30, 320, 640, 3)  # one frame per step; two envs side by side, 320 x 320 each
    assert frames.std(axis=(1, 2, 3)).min() > 20  # not blank
    moved = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    assert (moved > 0.05).all(), moved  # the robots move in every step under random actions


@pytest.mark.parametrize("script", SCRIPTS)
def test_capture_video_without_the_encoder_is_refused_before_any_simulation(script, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(envs.wrappers.importlib.util, "find_spec",
                        lambda name, *a: None if name == "imageio_ffmpeg" else find_spec(name, *a))
    with pytest.raises(ValueError, match="^--capture-video needs imageio_ffmpeg: pip install imageio imageio-ffmpeg$"):
        script.complete_args(script.Args(env_id="CartPole", capture_video=True))
    with pytest.raises(ValueError, match="--capture-video renders the final evaluation: drop --no-evaluate"):
        script.complete_args(script.Args(env_id="CartPole", capture_video=True, evaluate=False))


@pytest.mark.parametrize("script", [shac_dflex, ppo_dflex])
def test_videos_are_written_and_leave_the_numbers_unchanged(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = dict(env_id="CartPole", num_envs=4, horizon=8, total_timesteps=64, episode_length=20, seed=3, cuda=False)
    _, plain = script.main(script.Args(exp_name="plain", **args))
    run_name, filmed = script.main(script.Args(exp_name="filmed", capture_video=True, **args))
    assert filmed == plain
    for mode in ("deterministic", "stochastic"):
        frames = [frame for frame in imageio.get_reader(str(tmp_path / "videos" / run_name / f"eval_{mode}.mp4"))]
        assert len(frames) == 20  # every env ends at the 20-step time limit: one frame per step
        assert torch.tensor(np.stack(frames)).float().std() > 20


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_task_renders_a_frame(env_id):
    env = make_env(env_id, 1, requires_grad=False)
    env.reset()
    frame = FrameRenderer(env.task, num_envs=1).frame()
    assert frame.shape == (320, 320, 3) and frame.dtype == np.uint8
    assert frame.std() > 20  # shapes, ground and sky, not a blank image
