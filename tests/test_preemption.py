"""Runs that survive the machines users grow into: SIGTERM saves the current step, one writer per run directory,
a stale lock never blocks, checkpoints by wall clock; each resumed run equal to an uninterrupted one. The
trainers run as users run them (subprocesses, tiny config) on the 8 simulated devices the suite sets up."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from diffjax import checkpoint, files, train
from experiments.configs import tiny

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "experiments" / "configs" / "tiny.py")
COMMON = [f"--config={TINY}", "--noprogress", "--config.train.sample_every=100000", "--config.train.log_every=1"]
TOTAL = 40   # every run here ends at this step; each is stopped long before it
pytestmark = pytest.mark.slow


def _train(workdir, *flags, wait=True):
    cmd = [sys.executable, "-m", "experiments.train_ddpm", *COMMON, f"--out={workdir}", *flags]
    if wait:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _logged(workdir) -> list[dict]:
    path = workdir / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def _wait_training(proc, workdir, steps: int = 3):
    deadline = time.time() + 300
    while len(_logged(workdir)) < steps:
        assert proc.poll() is None and time.time() < deadline, "training stopped or never started"
        time.sleep(0.02)


def _assert_equal_runs(resumed, straight, total):
    graphdef, abstract = train.abstract_state(tiny.get_config())
    states = []
    for workdir in (resumed, straight):
        with checkpoint.manager(workdir, create=False) as mngr:
            states.append(checkpoint.restore(mngr, abstract._asdict()))
    assert int(states[0]["step"]) == int(states[1]["step"]) == total
    jax.tree.map(np.testing.assert_array_equal, *states)
    logs = [_logged(w) for w in (resumed, straight)]
    assert [r["step"] for r in logs[0]] == list(range(1, total + 1))
    assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run to TOTAL that saves its last step only."""
    run = tmp_path_factory.mktemp("straight")
    assert _train(run, f"--config.train.steps={TOTAL}", f"--config.train.ckpt_every={TOTAL}").returncode == 0
    return run


def test_sigterm_saves_the_current_step_and_the_rerun_equals_an_uninterrupted_run(tmp_path, straight):
    stopped = tmp_path / "stopped"
    only_on_signal = ["--config.train.ckpt_every=100000", "--config.train.ckpt_minutes=1000"]
    proc = _train(stopped, *only_on_signal, f"--config.train.steps={TOTAL}", wait=False)
    _wait_training(proc, stopped)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    with checkpoint.manager(stopped, create=False) as mngr:
        saved = checkpoint.steps(mngr)
    assert len(saved) == 1 and saved[0] == _logged(stopped)[-1]["step"]   # one consistent step, that of the log
    assert f"SIGTERM: checkpoint of step {saved[0]} saved in {stopped}; run the same command again" in err
    assert saved[0] < TOTAL
    assert _train(stopped, *only_on_signal, f"--config.train.steps={TOTAL}").returncode == 0
    _assert_equal_runs(stopped, straight, TOTAL)


def test_a_second_trainer_on_one_directory_exits_in_one_line_and_a_stale_lock_never_blocks(tmp_path):
    run = tmp_path / "run"
    first = _train(run, "--config.train.steps=100000", "--config.train.ckpt_every=5", wait=False)
    _wait_training(first, run)
    second = _train(run, "--config.train.steps=3")
    assert second.returncode == 2, second.stderr[-2000:]
    errors = [ln for ln in second.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: {run} is in use by PID {first.pid} on {socket.gethostname()}: wait until it finishes, "
                      f"or write elsewhere (--out)"]
    reader = subprocess.run([sys.executable, "-m", "experiments.sample", f"--run={run}", "--num=4", "--steps=2",
                             f"--out={tmp_path / 'samples'}"], cwd=ROOT, capture_output=True, text=True)
    assert reader.returncode == 0, reader.stderr[-2000:]   # readers sample from a run that is training
    _wait_training(first, run, len(_logged(run)) + 3)   # the first trains on, its log its own
    first.send_signal(signal.SIGKILL)                     # leaves its lock file behind
    first.wait()
    steps = [r["step"] for r in _logged(run)]
    assert steps == list(range(1, len(steps) + 1))
    assert (run / files.LOCK_FILE).read_text().startswith(f"PID {first.pid} ")
    with checkpoint.manager(run, create=False) as mngr:
        newest = checkpoint.steps(mngr)[0]
    again = _train(run, f"--config.train.steps={newest + 1}", "--config.train.ckpt_every=5")
    assert again.returncode == 0, again.stderr[-2000:]   # the stale lock did not block


def test_a_checkpoint_by_wall_clock_resumes_bit_exactly(tmp_path, straight):
    killed = tmp_path / "killed"
    by_clock = ["--config.train.ckpt_every=100000", "--config.train.ckpt_minutes=0.001"]   # every 60 ms
    proc = _train(killed, *by_clock, f"--config.train.steps={TOTAL}", wait=False)
    _wait_training(proc, killed, 6)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with checkpoint.manager(killed, create=False) as mngr:
        saved = checkpoint.steps(mngr)
    last_logged = _logged(killed)[-1]["step"]
    # The step cadence (every 100,000 steps) would have saved nothing; the clock (60 ms, shorter than a logged step)
    # saves about every step, so the newest intact checkpoint is the last logged step or one of the two before it.
    assert saved, "no checkpoint: the wall-clock cadence saved nothing"
    assert last_logged - 2 <= saved[0] <= last_logged < TOTAL, (saved, last_logged)
    resume = ["--config.train.ckpt_every=100000", "--config.train.ckpt_minutes=1000"]   # saves its last step only
    assert _train(killed, *resume, f"--config.train.steps={TOTAL}").returncode == 0
    _assert_equal_runs(killed, straight, TOTAL)


@pytest.mark.parametrize("error, fix", [(OSError(28, "No space left on device"), "free disk space"),
                                        (PermissionError(13, "Permission denied"), "fix that")])
def test_a_failed_save_names_the_exception_and_says_disk_full_only_for_enospc(tmp_path, monkeypatch, error, fix):
    import orbax.checkpoint as ocp

    def failing_save(*args, **kwargs):
        raise error

    monkeypatch.setattr(ocp.CheckpointManager, "save", failing_save)
    mngr = checkpoint.manager(tmp_path / "run")
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.save(mngr, 1, {"w": jax.numpy.ones(3)})
    mngr.close()
    message = str(e.value)
    assert fix in message and type(error).__name__ in message and str(tmp_path / "run" / "checkpoints" / "1") in message
    assert ("free disk space" in message) == (error.errno == 28)


def test_kill_9_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path, straight):
    """SIGKILL twice at seeded random moments of a run that checkpoints every step (so most of its time is spent
    inside checkpoint writes, and kills land mid-write, mid-step and mid-log); each time the next run resumes from
    the newest intact step, and the run ends bit-equal to an uninterrupted one of the same length."""
    import random

    killed = tmp_path / "killed"
    rng = random.Random(0)
    for _ in range(2):
        proc = _train(killed, "--config.train.ckpt_every=1", f"--config.train.steps={TOTAL}", wait=False)
        _wait_training(proc, killed, len(_logged(killed)) + 2)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with checkpoint.manager(killed, create=False) as mngr:
        saved = checkpoint.steps(mngr)
    assert saved and saved[0] < TOTAL, saved   # precondition: the kills landed mid-run, after a checkpoint
    assert _train(killed, f"--config.train.ckpt_every={TOTAL}", f"--config.train.steps={TOTAL}").returncode == 0
    _assert_equal_runs(killed, straight, TOTAL)
