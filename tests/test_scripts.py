"""What every algorithm script shares: observation statistics, tags, determinism, saved models, errors for bad
input."""
import importlib.util
import math
import re
import subprocess
import sys

import pytest
import torch
from helpers import record_env_steps
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ppo_dflex
import rpo_continuous_dflex
import sapo_dflex
import shac_dflex
from envs import ENV_IDS

SCRIPTS = [shac_dflex, sapo_dflex, rpo_continuous_dflex, ppo_dflex]


@pytest.mark.parametrize("normalizer_class", [shac_dflex.ObsNormalizer, ppo_dflex.RunningMeanStd])
def test_running_normalizer_matches_statistics_of_all_observations_seen(normalizer_class):
    normalizer = normalizer_class(3)
    batches = [torch.randn(50, 3) * torch.tensor([1.0, 5.0, 0.1]) + 2 for _ in range(4)]
    for batch in batches:
        normalizer.update(batch)
    # the prior (mean 0, var 1, count 1) acts as one pseudo-observation with that mean and variance
    data = torch.cat(batches).double()
    count = 1 + len(data)
    mean = data.sum(0) / count
    var = (1 + ((data - mean) ** 2).sum(0) + mean**2) / count
    torch.testing.assert_close(normalizer.mean, mean)
    torch.testing.assert_close(normalizer.var, var)


def events_of(run_dir):
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return {tag: accumulator.Scalars(tag) for tag in accumulator.Tags()["scalars"]}


def scalars_of(run_dir):
    return {tag: [event.value for event in events] for tag, events in events_of(run_dir).items()}


COMMON_TAGS = {
    "charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate", "losses/actor_loss",
    "losses/value_loss", "losses/grad_norm", "losses/skipped_updates", "perf/sim_s", "perf/update_s",
    "eval/deterministic_return", "eval/stochastic_return", "charts/episodes_ended",
}
SHAC_TAGS = COMMON_TAGS | {"losses/kl", "losses/kl_max", "losses/skipped_critic_updates"}
SAPO_TAGS = SHAC_TAGS | {"losses/entropy", "losses/alpha"}
RPO_TAGS = SHAC_TAGS | {"losses/entropy", "losses/clipfrac", "losses/ratio_max", "losses/action_grad_norm",
                        "losses/surrogate"}
PPO_TAGS = COMMON_TAGS | {"losses/approx_kl", "losses/clipfrac", "losses/entropy"}
EXPECTED_TAGS = {shac_dflex: SHAC_TAGS, sapo_dflex: SAPO_TAGS, rpo_continuous_dflex: RPO_TAGS, ppo_dflex: PPO_TAGS}


def tiny_cartpole_args(script, exp_name, **overrides):
    """Two iterations of 4 envs x 8 steps unless overridden; exp_name keeps runs apart that start within the
    same second."""
    if script is ppo_dflex:
        overrides["minibatch_size"] = 16  # two minibatches of the 32 samples
    settings = dict(env_id="CartPole", num_envs=4, horizon=8, total_timesteps=64, episode_length=5, seed=3,
                    cuda=False)
    return script.Args(exp_name=exp_name, **{**settings, **overrides})


@pytest.mark.parametrize("script", SCRIPTS)
def test_seeded_cartpole_run_logs_every_tag_and_repeats_exactly(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = []
    for name in ("first", "second"):
        run_name, _ = script.main(tiny_cartpole_args(script, name))
        runs.append(scalars_of(tmp_path / "runs" / run_name))
    first, second = runs
    assert EXPECTED_TAGS[script] <= set(first)
    timing = {"charts/SPS", "perf/sim_s", "perf/update_s"}
    for tag in set(first) - timing:
        assert first[tag] == second[tag], tag


@pytest.mark.parametrize("script", SCRIPTS)
def test_saved_model_reloads_and_evaluates_to_the_same_returns(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_name, trained_returns = script.main(tiny_cartpole_args(script, "train", save_model=True))
    model_path = f"runs/{run_name}/train.model"
    _, reloaded_returns = script.main(tiny_cartpole_args(script, "reload", eval_model=model_path))
    # same seed, same fresh reset, same deterministic policy
    assert reloaded_returns["deterministic"] == trained_returns["deterministic"]
    with pytest.raises(ValueError, match="run with --env-id CartPole"):
        script.complete_args(script.Args(env_id="Ant", eval_model=model_path))


BAD_ARGUMENTS = [
    ({"env_id": "Pendulum"}, "known ids: Ant, Hopper"),
    ({"env_id": "CartPole", "num_envs": 0}, "--num-envs must be at least 1"),
    ({"env_id": "CartPole", "num_envs": 64, "total_timesteps": 1000}, "raise it or lower --num-envs"),
    ({"env_id": "CartPole", "eval_model": "missing.model"}, "no such file"),
]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("kwargs, message", BAD_ARGUMENTS)
def test_impossible_arguments_are_refused_with_the_fix_named(script, kwargs, message):
    with pytest.raises(ValueError, match=message):
        script.complete_args(script.Args(**kwargs))


def test_nonpositive_initial_temperature_is_refused():
    with pytest.raises(ValueError, match="--alpha-init must be positive"):
        sapo_dflex.complete_args(sapo_dflex.Args(env_id="CartPole", alpha_init=0.0))


@pytest.mark.parametrize("script", SCRIPTS)
def test_command_line_reports_bad_input_in_one_line(script):
    result = subprocess.run([sys.executable, script.__file__, "--env-id", "Pendulum"], capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: unknown env id 'Pendulum'; known ids: Ant, Hopper, Humanoid, Anymal, HandReorient, CartPole, "
        "RewarpedAnt, RewarpedHumanoid, or your own env as module:Class (docs/env_contract.md)"
    ]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("broken", ["actor", "every network"])
def test_nonfinite_gradients_are_skipped_reported_and_abort_the_run(script, broken, tmp_path, monkeypatch, capsys):
    """The actor's gradient norm (or every one) reads NaN: no broken network may take an optimiser step, each kind of
    skip is reported once on stderr, and --max-skipped-updates skips in a row stop the run. The actor's count
    iterations, the critics' minibatches (their 2 skips in a row come first); PPO steps both networks together
    and counts iterations."""
    monkeypatch.chdir(tmp_path)
    actors = []

    class RecordedActor(script.Actor):
        def __init__(self, *args):
            super().__init__(*args)
            actors.append(self)

    clip_grad_norm = torch.nn.utils.clip_grad_norm_

    def nan_where_broken(parameters, max_norm):
        parameters = list(parameters)
        if broken == "every network" or any(p is actors[0].mean.weight for p in parameters):
            return torch.tensor(float("nan"))
        return clip_grad_norm(parameters, max_norm)

    stepped, adamw_step = [], torch.optim.AdamW.step

    def recorded_step(self, closure=None):
        stepped.append({id(p) for group in self.param_groups for p in group["params"]})
        return adamw_step(self, closure)

    monkeypatch.setattr(script, "Actor", RecordedActor)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", nan_where_broken)
    monkeypatch.setattr(torch.optim.AdamW, "step", recorded_step)
    what = ("gradient" if script is ppo_dflex else
            "critic gradient" if broken == "every network" else "actor gradient")
    with pytest.raises(RuntimeError, match=f"^{what} non-finite in 2 updates in a row"):
        script.main(tiny_cartpole_args(script, "nonfinite", total_timesteps=96, max_skipped_updates=2))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: non-finite")]
    expected = {"actor gradient", "critic gradient"} if broken == "every network" else {"actor gradient"}
    assert sorted(line.split("non-finite ")[1].split(" at")[0] for line in warnings) == sorted(
        {"gradient"} if script is ppo_dflex else expected)
    actor_parameters = {id(p) for p in actors[0].parameters()}
    assert not any(ids & actor_parameters for ids in stepped)
    if broken == "every network":
        assert all(len(ids) == 1 for ids in stepped)  # only SAPO's temperature, log alpha


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_finished_episode_is_logged_at_the_step_it_ended_with_its_return(script, tmp_path, monkeypatch):
    """Episodes of 5 steps in 2 iterations of 8 steps: one charts/episodic_return point per episode, at the env
    step where it ended, equal to the sum of its rewards as the env returned them."""
    monkeypatch.chdir(tmp_path)
    steps = record_env_steps(monkeypatch, script)
    run_name, _ = script.main(tiny_cartpole_args(script, "episodes", evaluate=False))
    num_envs = 4
    expected, running = [], torch.zeros(num_envs)
    for k, (_, reward, terminated, truncated, _) in enumerate(steps):
        running += reward
        for env in (terminated | truncated).nonzero().flatten().tolist():
            expected.append(((k + 1) * num_envs, running[env].item(), 5.0))
            running[env] = 0
    events = events_of(tmp_path / "runs" / run_name)
    returns = sorted((e.step, e.value) for e in events["charts/episodic_return"])
    lengths = sorted((e.step, e.value) for e in events["charts/episodic_length"])
    assert len(expected) == 4 * 3  # every env ends after steps 5, 10 and 15
    assert [step for step, _ in returns] == [step for step, _, _ in sorted(expected)]
    assert [value for _, value in returns] == pytest.approx([value for _, value, _ in sorted(expected)], rel=1e-6)
    assert lengths == [(step, length) for step, _, length in sorted(expected)]
    assert [e.value for e in events["charts/episodes_ended"]] == [4, 8]  # iteration 1: step 5; 2: steps 10, 15
    assert not any(math.isnan(e.value) for tag_events in events.values() for e in tag_events)


@pytest.mark.parametrize("script", SCRIPTS)
def test_progress_line_counts_the_episodes_gives_the_time_left_and_never_prints_nan(script, tmp_path, monkeypatch,
                                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    script.main(tiny_cartpole_args(script, "long", episode_length=100, evaluate=False))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "iteration 2/2" in last and "no episode ended yet" in last and "ETA 0.0 min" in last
    script.main(tiny_cartpole_args(script, "short", evaluate=False))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("iteration")]
    counts = [int(re.search(r"over (\d+) episodes", line).group(1)) for line in lines]
    assert sum(counts) == 12  # each episode counted on the first line after it ended
    assert all("elapsed" in line and "ETA" in line and "nan" not in line.lower() for line in lines)


@pytest.mark.parametrize("script", SCRIPTS)
def test_track_without_wandb_is_refused_before_any_simulation_with_the_install_command(script, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    with pytest.raises(ValueError, match="--track needs the wandb package: pip install wandb"):
        script.complete_args(script.Args(env_id="CartPole", track=True))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_env_id_has_a_default_num_envs(script):
    for env_id in ENV_IDS:
        assert script.complete_args(script.Args(env_id=env_id)).num_envs == script.PAPER_NUM_ENVS[env_id]
