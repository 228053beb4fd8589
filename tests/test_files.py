"""Every file the project reads fails in one line that names it (empty, truncated, garbage), before any work,
and leaves what is already written as it was."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from diffjax import digit_score, evaluation, files, images, inception, learned_pde, processes, train
from experiments.configs import tiny

ROOT = Path(__file__).resolve().parents[1]
CORRUPTIONS = {"empty": lambda b: b"", "truncated": lambda b: b[: len(b) // 2], "garbage": lambda b: b"\x00{garbage"}


def _corrupt(path: Path, how: str) -> None:
    path.write_bytes(CORRUPTIONS[how](path.read_bytes()))


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != files.LOCK_FILE}   # the OS lock file


def _run_dir(tmp_path, cfg) -> Path:
    """A run directory as training leaves it: its config and a metrics log."""
    run = tmp_path / "run"
    run.mkdir()
    files.write_text(run / "config.json", json.dumps(json.loads(cfg.to_json_best_effort()), indent=2))
    files.write_text(run / "metrics.jsonl", "".join(json.dumps({"step": s, "loss": 0.5}) + "\n" for s in (1, 2, 3)))
    return run


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl"])
def test_a_damaged_run_file_stops_training_before_it_writes_anything(tmp_path, tiny_cfg, name, how):
    run = _run_dir(tmp_path, tiny_cfg)
    _corrupt(run / name, how)
    before = _snapshot(run)
    with pytest.raises(files.DamagedFileError, match=f"{run / name} is damaged"):
        train.run(tiny_cfg, run, progress=False)
    assert _snapshot(run) == before


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_damaged_config_stops_sampling_with_its_name(tmp_path, tiny_cfg, how):
    run = _run_dir(tmp_path, tiny_cfg)
    _corrupt(run / "config.json", how)
    with pytest.raises(files.DamagedFileError, match=f"{run / 'config.json'} is damaged"):
        train.restore_ema(run)


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_damaged_eval_json_stops_evaluate_before_sampling_and_is_kept(tmp_path, tiny_cfg, how):
    run = _run_dir(tmp_path, tiny_cfg)
    files.write_text(run / evaluation.EVAL_FILE, json.dumps({"ddim_50steps_eta0_n1000_seed0": {"fd": 80.0}}))
    _corrupt(run / evaluation.EVAL_FILE, how)
    before = _snapshot(run)
    with pytest.raises(files.DamagedFileError, match=f"{run / evaluation.EVAL_FILE} is damaged"):
        evaluation.evaluate(run)   # no checkpoint in it either: the eval file is read first
    assert _snapshot(run) == before


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_damaged_ihdm_prior_names_the_file(tmp_path, how):
    cfg = tiny.get_config("ihdm")
    path = tmp_path / processes.PRIOR_FILE
    images.save_arrays(path, coefficients=np.zeros((4, 2, 2, 1), np.float32))
    _corrupt(path, how)
    with pytest.raises(files.DamagedFileError, match=f"{path} is damaged.*train_ddpm --out"):
        processes.load_prior(cfg, tmp_path)


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_damaged_inception_weights_name_the_file(tmp_path, how):
    path = tmp_path / "inception.npz"
    images.save_arrays(path, x=np.zeros(1000, np.float32))
    _corrupt(path, how)
    with pytest.raises(inception.InceptionWeightsError, match=str(path)):
        inception.load(path)


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_damaged_classifier_cache_is_named_and_trained_again(tmp_path, how, caplog):
    path = tmp_path / "clf.npz"
    images.save_arrays(path, x=np.zeros(1000, np.float32))
    _corrupt(path, how)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: digit_score.DigitNet(nnx.Rngs(0), 1, 28)))
    assert digit_score._read_cached(path, graphdef, abstract) is None
    assert str(path) in caplog.text


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_damaged_learned_pde_config_names_the_file(tmp_path, how):
    run = tmp_path / "lambda" / "gaussian_0.2"
    run.mkdir(parents=True)
    files.write_text(run / "config.json", json.dumps({"model": "lambda", "kind": "gaussian", "level": 0.2}))
    _corrupt(run / "config.json", how)
    with pytest.raises(files.DamagedFileError, match=f"{run / 'config.json'} is damaged"):
        learned_pde.load(run)


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_png_that_is_not_an_image_names_the_file(tmp_path, how):
    images.save_png(tmp_path / "a.png", np.zeros((8, 8, 1), np.uint8))
    images.save_png(tmp_path / "b.png", np.full((8, 8, 1), 200, np.uint8))
    _corrupt(tmp_path / "b.png", how)
    with pytest.raises(files.DamagedFileError, match=f"{tmp_path / 'b.png'} is not a readable PNG"):
        images.load_folder(tmp_path)


def test_the_entry_point_reports_a_damaged_file_in_one_line_and_exits_2(tmp_path, tiny_cfg):
    run = _run_dir(tmp_path, tiny_cfg)
    _corrupt(run / "config.json", "garbage")
    p = subprocess.run([sys.executable, "-m", "experiments.sample", f"--run={run}"], cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: {run / 'config.json'} is damaged (not JSON: Expecting value: line 1 column 1 (char 0)): "
                     f"{train.RUN_CONFIG_FIX}"], p.stderr


def test_files_read_back_what_was_written(tmp_path):
    files.write_text(tmp_path / "a.json", json.dumps({"x": [1, 2]}))
    assert files.read_json(tmp_path / "a.json", "fix") == {"x": [1, 2]}
    files.write_text(tmp_path / "m.jsonl", '{"step": 1}\n{"step": 2, "loss": 0.5}\n')
    assert files.read_jsonl(tmp_path / "m.jsonl", "fix") == [{"step": 1}, {"step": 2, "loss": 0.5}]
    with pytest.raises(files.DamagedFileError, match="a JSON list where a dict belongs"):
        files.write_text(tmp_path / "l.json", "[1]")
        files.read_json(tmp_path / "l.json", "fix")
    assert not list(tmp_path.glob(".*.tmp"))   # the atomic writer leaves no temporary file behind


def test_grid_tiles_images_row_by_row_with_padding():
    x = np.random.default_rng(0).integers(0, 255, (5, 3, 4, 1), dtype=np.uint8)
    g = images.grid(x, ncols=2, pad=2)
    assert g.shape == (3 * 5 + 2, 2 * 6 + 2, 1)
    for i, img in enumerate(x):
        r, c = divmod(i, 2)
        np.testing.assert_array_equal(g[2 + 5 * r: 5 + 5 * r, 2 + 6 * c: 6 + 6 * c], img)
    assert (g[12:15, 8:12] == 255).all() and (g[:2] == 255).all()   # the empty sixth tile and the border
