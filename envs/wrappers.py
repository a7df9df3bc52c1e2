"""Env wrappers in Gymnasium's idiom: `RecordEpisodeStatistics` and `RecordVideo` around any env of the contract
(docs/env_contract.md)."""
import importlib.util
import os

import torch

from . import UsageError

VIDEO_PACKAGES = ("imageio", "imageio_ffmpeg")


class Wrapper:
    """Passes every call and attribute it does not define on to the env inside it."""

    def __init__(self, env):
        self.env = env

    def __getattr__(self, name):
        return getattr(self.env, name)

    @property
    def unwrapped(self):
        return self.env.unwrapped if isinstance(self.env, Wrapper) else self.env


class RecordEpisodeStatistics(Wrapper):
    """Undiscounted return and length of every episode, as Gymnasium's vector `RecordEpisodeStatistics` gives them.

    At a step where some envs' episodes ended, `info["episode"] = {"r": returns, "l": lengths}` (N entries each)
    and `info["_episode"]` marks the envs whose entries are valid. The running sums count the raw env reward,
    are detached, and travel with `state_dict()` so that a resumed run reports the episodes it was in.
    """

    def __init__(self, env):
        super().__init__(env)
        self.episode_return = torch.zeros(env.num_envs, device=env.device)
        self.episode_length = torch.zeros(env.num_envs, device=env.device)

    def reset(self, seed=None):
        self.episode_return.zero_()
        self.episode_length.zero_()
        return self.env.reset(seed=seed)

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.episode_return += reward.detach()
        self.episode_length += 1
        ended = terminated | truncated
        if ended.any():
            info = {**info, "episode": {"r": self.episode_return.clone(), "l": self.episode_length.clone()},
                    "_episode": ended}
            self.episode_return[ended] = 0
            self.episode_length[ended] = 0
        return obs, reward, terminated, truncated, info

    def state_dict(self):
        return {"env": self.env.state_dict(), "episode_return": self.episode_return.clone(),
                "episode_length": self.episode_length.clone()}

    def load_state_dict(self, state):
        self.env.load_state_dict(state["env"])
        self.episode_return.copy_(state["episode_return"])
        self.episode_length.copy_(state["episode_length"])


def check_video_support():
    """Raise a one-line error naming what to install when MP4 writing is not available."""
    missing = [name for name in VIDEO_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"--capture-video needs {' and '.join(missing)}: pip install imageio imageio-ffmpeg")


class RecordVideo(Wrapper):
    """The env's `render()` after every step, written to the MP4 `path` at `env.metadata["render_fps"]` frames per
    second; `close()` finishes the file."""

    def __init__(self, env, path):
        super().__init__(env)
        check_video_support()
        import imageio.v2 as imageio

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.writer = imageio.get_writer(path, fps=env.metadata["render_fps"], codec="libx264", macro_block_size=1,
                                         ffmpeg_log_level="error")

    def step(self, actions):
        result = self.env.step(actions)
        self.writer.append_data(self.env.render())
        return result

    def close(self):
        self.writer.close()
