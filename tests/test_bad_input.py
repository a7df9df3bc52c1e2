"""Bad input, all of it: every numeric and path option of every script, given an impossible value, is refused with
a one-line error that names the option, before any simulation starts and before any run directory is made."""
import dataclasses
import math
import subprocess
import sys
import typing

import pytest
import torch.nn as nn
from test_scripts import SCRIPTS

import ppo_dflex
import rpo_continuous_dflex
import sapo_dflex
import shac_dflex
from envs import UsageError
from envs.checkpoint import atomic_save, save_model

# filled in at run time from the sizes: a value given on the command line is overwritten, never used
DERIVED = {"batch_size", "num_iterations"}


def numeric_options(script):
    """(name, kind, is_tuple) of every int, float or tuple-of-numbers option of `script.Args`."""
    options = []
    for field in dataclasses.fields(script.Args):
        kind = field.type
        if typing.get_origin(kind) is typing.Union:  # Optional[...]
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        is_tuple = typing.get_origin(kind) is tuple
        if is_tuple:
            kind = typing.get_args(kind)[0]
        if kind in (int, float) and field.name not in DERIVED:
            options.append((field.name, kind, is_tuple))
    return options


def refused(script, tmp_path, monkeypatch, **overrides):
    """The error `script.main` raises for CartPole with `overrides`; asserts that it is one line and that the
    working directory got no run directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as error:
        settings = dict(env_id="CartPole", num_envs=4, horizon=8, total_timesteps=64, cuda=False)
        script.main(script.Args(**{**settings, **overrides}))
    message = str(error.value)
    assert "\n" not in message and message
    assert not (tmp_path / "runs").exists() and not (tmp_path / "videos").exists()
    return message


def flag(name):
    return "--" + name.replace("_", "-")


def with_value(kind, is_tuple, value):
    return (kind(value),) if is_tuple else kind(value)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_numeric_option_refuses_a_negative_value(script, tmp_path, monkeypatch):
    options = numeric_options(script)
    names = {name for name, _, _ in options}
    assert {"seed", "num_envs", "horizon", "total_timesteps", "max_grad_norm", "actor_hidden"} <= names
    for name, kind, is_tuple in options:
        message = refused(script, tmp_path, monkeypatch, **{name: with_value(kind, is_tuple, -1)})
        assert flag(name) in message, (name, message)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_float_option_refuses_nan_and_infinity(script, tmp_path, monkeypatch):
    for name, kind, is_tuple in numeric_options(script):
        if kind is float:
            for value in (math.nan, math.inf):
                message = refused(script, tmp_path, monkeypatch, **{name: with_value(kind, is_tuple, value)})
                assert flag(name) in message, (name, message)


COMMON_NONZERO = {"num_envs", "horizon", "total_timesteps", "episode_length", "max_skipped_updates", "max_grad_norm",
                  "actor_hidden", "critic_hidden", "sim_workers"}
BPTT_NONZERO = COMMON_NONZERO | {"critic_iterations", "num_minibatches", "actor_lr", "critic_lr", "end_lr",
                                 "critic_max_grad_norm"}
ENTROPY_NONZERO = BPTT_NONZERO | {"target_entropy_scale"}
NONZERO = {  # options for which 0 means nothing: no envs, no steps, no learning, log(0), a division by 0
    shac_dflex: BPTT_NONZERO,
    sapo_dflex: ENTROPY_NONZERO | {"alpha_init", "alpha_lr"},
    rpo_continuous_dflex: ENTROPY_NONZERO | {"update_epochs"},
    ppo_dflex: COMMON_NONZERO | {"update_epochs", "minibatch_size", "learning_rate", "adam_eps", "target_kl",
                                 "min_lr", "max_lr", "clip_coef", "obs_clip"},
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_zero_is_refused_where_it_is_impossible(script, tmp_path, monkeypatch):
    kinds = {name: (kind, is_tuple) for name, kind, is_tuple in numeric_options(script)}
    for name in NONZERO[script]:
        message = refused(script, tmp_path, monkeypatch, **{name: with_value(*kinds[name], 0)})
        assert flag(name) in message, (name, message)


OVER_ONE = {  # a discount, a lambda, Adam's betas and RPO's lower clip end above their ranges
    shac_dflex: {"gamma": 1.5, "td_lambda": 1.5, "betas": (1.0, 0.95)},
    sapo_dflex: {"gamma": 1.5, "td_lambda": 1.5, "betas": (0.7, 1.0)},
    rpo_continuous_dflex: {"gamma": 1.5, "td_lambda": 1.5, "betas": (1.0, 0.95), "clip_low": 1.0},
    ppo_dflex: {"gamma": 1.5, "gae_lambda": 1.5},
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_fractions_above_their_range_are_refused(script, tmp_path, monkeypatch):
    for name, value in OVER_ONE[script].items():
        message = refused(script, tmp_path, monkeypatch, **{name: value})
        assert flag(name) in message, (name, message)


def files(tmp_path, script):
    """A text file, a model and a checkpoint of `script` for CartPole, a model for Ant and one of another script."""
    other = SCRIPTS[(SCRIPTS.index(script) + 1) % len(SCRIPTS)]
    args = script.complete_args(script.Args(env_id="CartPole", num_envs=4, horizon=8, total_timesteps=64))
    (tmp_path / "notes.txt").write_text("not a model\n")
    save_model(str(tmp_path / "cartpole.model"), script.SCRIPT, args, {"actor": nn.Linear(1, 1)})
    save_model(str(tmp_path / "ant.model"), script.SCRIPT, dataclasses.replace(args, env_id="Ant"),
               {"actor": nn.Linear(1, 1)})
    save_model(str(tmp_path / "other.model"), other.SCRIPT, args, {"actor": nn.Linear(1, 1)})
    checkpoint = {"script": script.SCRIPT, "run_name": "run", "args": dataclasses.asdict(args)}
    atomic_save(checkpoint, str(tmp_path / "checkpoint.pt"))
    atomic_save({**checkpoint, "script": other.SCRIPT}, str(tmp_path / "other.pt"))
    return other


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_path_option_refuses_what_it_cannot_use(script, tmp_path, monkeypatch):
    other = files(tmp_path, script)
    (tmp_path / "work").mkdir()
    cases = [
        ("eval_model", "missing.model", "no such file"),
        ("eval_model", str(tmp_path / "notes.txt"), "not a readable model"),
        ("eval_model", str(tmp_path / "checkpoint.pt"), "not a model saved with --save-model"),
        ("eval_model", str(tmp_path / "ant.model"), "holds a model for Ant; run with --env-id Ant"),
        ("eval_model", str(tmp_path / "other.model"), f"is a model of {other.SCRIPT}; evaluate it with that script"),
        ("resume", "missing.pt", "not a readable checkpoint"),
        ("resume", str(tmp_path / "notes.txt"), "not a readable checkpoint"),
        ("resume", str(tmp_path / "cartpole.model"), "not a checkpoint"),
        ("resume", str(tmp_path / "other.pt"), f"is a checkpoint of {other.SCRIPT}; resume it with that script"),
    ]
    for name, path, expected in cases:
        message = refused(script, tmp_path / "work", monkeypatch, **{name: path})
        assert flag(name) in message and expected in message, (name, path, message)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_command_line_gives_one_error_line_no_traceback_and_no_run_directory(script, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model\n")
    for bad in (["--eval-model", "notes.txt"], ["--resume", "notes.txt"], ["--gamma", "-1"], ["--seed", "-3"]):
        result = subprocess.run([sys.executable, script.__file__, "--env-id", "CartPole", *bad], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), (bad, result.stderr)
        assert bad[0] in lines[0] and "Traceback" not in result.stderr and result.stdout == ""
        assert not (tmp_path / "runs").exists()
