"""`--track`: the wandb run mirrors the TensorBoard log, is named and configured as the run, continues across
--resume, and carries the evaluation videos. The wandb library itself, offline (WANDB_MODE=offline), in a
subprocess each (its TensorBoard patch must not reach the other tests)."""
import glob
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_scripts import events_of

from wandb.proto import wandb_internal_pb2

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_FILES = ["shac_dflex.py", "sapo_dflex.py", "rpo_continuous_dflex.py", "ppo_dflex.py"]
ENV = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", WANDB_CONSOLE="off", OMP_NUM_THREADS="1")
BLOCK = 32768  # the .wandb file is a log of 32 KiB blocks of (crc32, length, kind) framed chunks after a 7-byte header


def wandb_records(path):
    """Every record of an offline run's .wandb file, parsed as wandb's protocol buffers."""
    data, pos, records, pending = Path(path).read_bytes(), 7, [], b""
    assert data.startswith(b":W&B")
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # too little left in the block for a chunk header: padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:  # a whole record
            records.append(chunk)
        elif kind in (2, 3):  # the first or a middle part
            pending += chunk
        elif kind == 4:  # the last part
            records.append(pending + chunk)
            pending = b""
    parsed = []
    for chunk in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        parsed.append(record)
    return parsed


def offline_run(run_dir):
    """(run id, display name, config, history rows) of the offline run in `run_dir`."""
    (path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    run_id = display_name = None
    config, history = {}, []
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_id, display_name = record.run.run_id, record.run.display_name
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
    return run_id, display_name, config, history


def command(script, *extra):
    return [sys.executable, str(ROOT / script), "--env-id", "CartPole", "--num-envs", "4", "--horizon", "8",
            "--total-timesteps", "64", "--episode-length", "5", "--seed", "3", "--track", *extra]


def scalars_by_step(history, tag):
    return sorted((row["global_step"], row[tag]) for row in history if tag in row)


@pytest.mark.parametrize("script", SCRIPT_FILES)
def test_the_offline_wandb_run_holds_the_tensorboard_scalars_the_arguments_and_the_run_name(script, tmp_path):
    result = subprocess.run(command(script, *(["--minibatch-size", "16"] if script == "ppo_dflex.py" else [])),
                            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    (offline_dir,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    _, name, config, history = offline_run(offline_dir)
    assert name == os.path.basename(run_dir)
    assert (config["env_id"], config["num_envs"], config["seed"], config["track"]) == ("CartPole", 4, 3, True)
    tensorboard = events_of(run_dir)
    assert {"charts/episodic_return", "losses/value_loss", "eval/deterministic_return"} <= set(tensorboard)
    for tag, events in tensorboard.items():
        expected = sorted((event.step, event.value) for event in events)
        mirrored = scalars_by_step(history, tag)
        assert [step for step, _ in mirrored] == [step for step, _ in expected], tag
        assert [value for _, value in mirrored] == pytest.approx([value for _, value in expected], rel=1e-6), tag


def test_a_stopped_and_resumed_run_is_one_wandb_run_without_repeated_steps(tmp_path):
    """SIGTERM after the first of four checkpoints, then --resume: both parts log to the same run id, and
    together they hold every iteration's scalars once."""
    args = command("shac_dflex.py", "--total-timesteps", "128", "--checkpoint-every", "1")
    process = subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not glob.glob(str(tmp_path / "runs" / "*" / "checkpoint.pt")):
        assert process.poll() is None and time.time() < deadline, "no checkpoint was written"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 1 and "stopped by SIGTERM" in stderr, stderr[-2000:]
    (checkpoint,) = glob.glob(str(tmp_path / "runs" / "*" / "checkpoint.pt"))
    resumed = subprocess.run(args + ["--resume", checkpoint], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    parts = sorted(glob.glob(str(tmp_path / "wandb" / "offline-run-*")))
    assert len(parts) == 2
    runs = [offline_run(part) for part in parts]
    assert runs[0][0] == runs[1][0] and re.search(runs[0][0] + "$", parts[1])  # one run id
    steps = [step for run in runs for step, _ in scalars_by_step(run[3], "losses/value_loss")]
    assert sorted(steps) == [32, 64, 96, 128]  # every iteration once
    assert max(s for s, _ in scalars_by_step(runs[0][3], "losses/value_loss")) < min(
        s for s, _ in scalars_by_step(runs[1][3], "losses/value_loss"))


def test_the_evaluation_videos_are_in_the_offline_runs_files(tmp_path):
    result = subprocess.run(command("shac_dflex.py", "--capture-video"), cwd=tmp_path, env=ENV, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (offline_dir,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    videos = sorted(os.path.basename(path) for path in glob.glob(f"{offline_dir}/files/media/videos/**/*.mp4",
                                                                  recursive=True))
    assert len(videos) == 2 and all(video.startswith(("eval_deterministic", "eval_stochastic")) for video in videos)
