"""Checkpoints prove themselves: every way of damaging a saved step is caught, restore falls back."""

import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from diffjax import checkpoint, train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from experiments.configs import tiny
    cfg = tiny.get_config()
    cfg.train.update(steps=4, ckpt_every=2, sample_every=1000)
    workdir = tmp_path_factory.mktemp("ckpt")
    train.run(cfg, workdir, progress=False)
    return cfg, workdir


def _restore(workdir, cfg, step=None):
    _, abstract = train.abstract_state(cfg)
    mngr = checkpoint.manager(workdir, create=False)
    try:
        return checkpoint.restore(mngr, abstract._asdict(), step)
    finally:
        mngr.close()


def _data_files(step_dir: Path):
    return sorted((p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"),
                  key=lambda p: -p.stat().st_size)


def _zero_block(d):
    f = _data_files(d)[0]
    b = bytearray(f.read_bytes())
    b[len(b) // 4: len(b) // 4 + 4096] = bytes(min(4096, len(b) - len(b) // 4))
    f.write_bytes(bytes(b))


def _flip_bytes(d):
    f = _data_files(d)[0]
    b = bytearray(f.read_bytes())
    for i in range(0, len(b), max(1, len(b) // 7)):
        b[i] ^= 0xFF
    f.write_bytes(bytes(b))


def _truncate(d):
    f = _data_files(d)[0]
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _delete_file(d):
    _data_files(d)[0].unlink()


def _delete_metadata(d):
    (d / "default" / "_METADATA").unlink()


CORRUPTIONS = [_zero_block, _flip_bytes, _truncate, _delete_file, _delete_metadata]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_step_is_named_and_restore_falls_back_to_the_intact_one(run_dir, tmp_path, corrupt, caplog):
    cfg, src = run_dir
    workdir = tmp_path / "run"
    shutil.copytree(src, workdir)
    corrupt(workdir / "checkpoints" / "4")
    state = _restore(workdir, cfg)
    assert int(state["step"]) == 2
    jax.tree.map(np.testing.assert_array_equal, state, _restore(src, cfg, step=2))
    assert any("checkpoints/4 is damaged" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.strip("_"))
def test_no_intact_step_is_one_clear_error(run_dir, tmp_path, corrupt):
    cfg, src = run_dir
    workdir = tmp_path / "run"
    shutil.copytree(src, workdir)
    for step in ("2", "4"):
        corrupt(workdir / "checkpoints" / step)
    with pytest.raises(checkpoint.CheckpointError, match="no intact checkpoint.*step 4: .*step 2: "):
        _restore(workdir, cfg)


def test_restoring_the_ema_reads_a_part_of_the_step_and_still_verifies_all_of_it(run_dir, tmp_path, caplog,
                                                                                monkeypatch):
    """`restore_ema` asks Orbax for the EMA parameters and the step only: equal to the full restore's, replicated
    on every device (a target without shardings lands on the first device); a damaged file of the step is still
    caught by its manifest, and the restore falls back."""
    cfg, src = run_dir
    full = _restore(src, cfg)
    assert full["step"].sharding == jax.sharding.SingleDeviceSharding(jax.devices()[0])
    asked, orbax_restore = [], ocp.CheckpointManager.restore
    monkeypatch.setattr(ocp.CheckpointManager, "restore",
                        lambda self, s, args: asked.append(sorted(args.item)) or orbax_restore(self, s, args=args))
    _, _, ema, step = train.restore_ema(src)
    assert step == 4 and asked == [["ema_params", "step"]]
    jax.tree.map(np.testing.assert_array_equal, ema, full["ema_params"])
    assert all(a.sharding.device_set == set(jax.devices()) for a in jax.tree.leaves(ema))
    workdir = tmp_path / "run"
    shutil.copytree(src, workdir)
    _flip_bytes(workdir / "checkpoints" / "4")
    _, _, ema, step = train.restore_ema(workdir)
    assert step == 2 and any("checkpoints/4 is damaged" in r.getMessage() for r in caplog.records)
    jax.tree.map(np.testing.assert_array_equal, ema, _restore(src, cfg, step=2)["ema_params"])


@pytest.mark.parametrize("asked", [{"ema_params": {"extra": (3,)}}, {"step": (2,)}], ids=["extra_leaf", "shape"])
def test_a_part_the_step_does_not_hold_is_one_clear_error(run_dir, asked):
    """Asking for an array the step lacks, or for another shape, is an error, never a placeholder."""
    cfg, src = run_dir
    target = jax.tree.map(lambda shape: jax.ShapeDtypeStruct(shape, np.float32), asked,
                          is_leaf=lambda x: isinstance(x, tuple))
    with checkpoint.manager(src, create=False) as mngr, pytest.raises(checkpoint.CheckpointError, match="step 4"):
        checkpoint.restore(mngr, target, step=4)


def test_a_step_without_manifest_still_loads_with_a_note(run_dir, tmp_path, caplog):
    cfg, src = run_dir
    workdir = tmp_path / "run"
    shutil.copytree(src, workdir)
    (workdir / "checkpoints" / "4" / checkpoint.MANIFEST).unlink()
    state = _restore(workdir, cfg)
    assert int(state["step"]) == 4
    assert any("carries no checksum" in r.getMessage() for r in caplog.records)


def test_non_finite_values_are_caught_even_with_a_valid_manifest(run_dir, tmp_path):
    cfg, src = run_dir
    workdir = tmp_path / "run"
    mngr = checkpoint.manager(workdir)
    state = _restore(src, cfg)
    state["ema_params"] = jax.tree.map(lambda a: a * np.nan, state["ema_params"])
    checkpoint.save(mngr, 4, state)
    mngr.close()
    with pytest.raises(checkpoint.CheckpointError, match="non-finite"):
        _restore(workdir, cfg)


def test_a_failing_disk_write_keeps_the_previous_step_and_says_so(run_dir, tmp_path, monkeypatch):
    cfg, src = run_dir
    workdir = tmp_path / "run"
    shutil.copytree(src, workdir)
    state = _restore(workdir, cfg)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    mngr = checkpoint.manager(workdir)
    with pytest.raises(checkpoint.CheckpointError, match="step 6 to .* failed.*step 4 is intact.*free disk space"):
        checkpoint.save(mngr, 6, state)
    mngr.close()
    monkeypatch.undo()
    assert int(_restore(workdir, cfg)["step"]) == 4


def test_resume_sets_a_damaged_step_aside_and_retrains_it_exactly(run_dir, tmp_path):
    cfg, src = run_dir
    workdir = tmp_path / "run"
    shutil.copytree(src, workdir)
    _flip_bytes(workdir / "checkpoints" / "4")
    train.run(cfg, workdir, progress=False)
    assert (workdir / "damaged" / "4").is_dir()
    jax.tree.map(np.testing.assert_array_equal, _restore(workdir, cfg), _restore(src, cfg))
