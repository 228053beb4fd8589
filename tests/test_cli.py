"""The entry points end to end, as a user runs them (subprocesses, tiny config, offline)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.configs import tiny

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "experiments" / "configs" / "tiny.py")


def run(*args, expect_ok=True, **env_vars):
    env = dict(os.environ, **env_vars)
    p = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if expect_ok:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def assert_one_line_error(p, *needles):
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    error_lines = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, p.stderr[-3000:]
    for needle in needles:
        assert needle in error_lines[0], error_lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    run("experiments.train_ddpm", f"--config={TINY}", f"--out={workdir}", "--noprogress")
    return workdir


def test_train_writes_a_complete_run_directory(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "metrics.jsonl", "samples", "checkpoints"} <= names
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["2", "4"]
    assert (trained / "samples" / "step_0000004.png").exists()


def test_train_again_resumes_from_the_last_checkpoint(trained, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    p = run("experiments.train_ddpm", f"--config={TINY}", f"--out={workdir}", "--config.train.steps=6",
            "--noprogress")
    assert "done: step 6" in p.stdout
    assert [int(line.split(",")[0].split(":")[1]) for line in (workdir / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sample_writes_npz_png_and_trajectory(trained, tmp_path, sampler):
    run("experiments.sample", f"--run={trained}", f"--sampler={sampler}", "--steps=5", "--num=10",
        "--batch_size=8", f"--out={tmp_path}", "--trajectory=4", "--seed=3")
    name = f"{sampler}_{20 if sampler == 'ddpm' else 5}steps" + ("_eta0" if sampler == "ddim" else "") + "_seed3"
    images = np.load(tmp_path / f"{name}.npz")["images"]   # the name says what made it: nothing overwrites another
    assert images.shape == (10, 28, 28, 1) and images.dtype == np.uint8
    assert (tmp_path / f"{name}.png").exists() and (tmp_path / f"{name}_trajectory.png").exists()


@pytest.fixture(scope="module")
def heat_runs(tmp_path_factory):
    """A 2-step run of each heat process (tiny.py's settings, as in test_train: the compiled step is shared
    through the cache)."""
    runs = {}
    for process in ("ihdm", "blurring"):
        runs[process] = tmp_path_factory.mktemp(process)
        run("experiments.train_ddpm", f"--config={TINY}:{process}", f"--out={runs[process]}", "--noprogress",
            "--config.train.steps=2")
    return runs


@pytest.mark.parametrize("process", ["ihdm", "blurring"])
def test_heat_process_trains_and_samples_from_its_run_directory_alone(heat_runs, tmp_path, process):
    workdir = tmp_path / "run"
    shutil.copytree(heat_runs[process], workdir)
    assert (workdir / "prior.npz").exists() == (process == "ihdm")
    p = run("experiments.sample", f"--run={workdir}", "--num=8", "--steps=5", "--trajectory=4")
    delta = tiny.get_config("ihdm").diffusion.sample_noise   # the run's own sampling noise
    name = {"ihdm": f"ihdm_20steps_eta{delta:g}_seed0", "blurring": "blurring_5steps_seed0"}[process]
    images = np.load(workdir / "samples" / f"{name}.npz")["images"]
    assert images.shape == (8, 28, 28, 1) and f"with {process}" in p.stdout
    assert (workdir / "samples" / f"{name}_trajectory.png").exists()
    assert_one_line_error(run("experiments.sample", f"--run={workdir}", "--sampler=ddim", expect_ok=False),
                          f"a {process} run samples with {process}")
    if process == "ihdm":   # the prior is verified, never trusted
        (workdir / "prior.npz").write_bytes(b"garbage")
        assert_one_line_error(run("experiments.sample", f"--run={workdir}", expect_ok=False),
                              "prior.npz is damaged")


def test_compare_filters_with_ihdm_deblurring_and_restore_with_a_heat_run(heat_runs, tmp_path):
    out = tmp_path / "cmp"
    run("experiments.compare_filters", "--num=2", "--num_val=2", "--degradations=blur,gaussian",
        "--methods=wiener", f"--heat_run={heat_runs['ihdm']}", "--posterior_samples=2", f"--out={out}")
    results = json.loads((out / "results.json").read_text())
    ihdm = [r for r in results if r["method"].startswith("ihdm")]
    assert {(r["degradation"], r["level"]) for r in ihdm} == {("blur", 1.0), ("blur", 2.0)}
    assert {r["nfe"] for r in ihdm} < set(range(1, 21)) and "| blur | 1.0 | wiener |" in (out / "versus.md").read_text()
    p = run("experiments.restore", f"--run={heat_runs['ihdm']}", "--degradation=blur", "--level=2.0", "--num=2",
            "--posterior_samples=2", f"--out={tmp_path / 'r'}")
    assert "ihdm" in p.stdout and (tmp_path / "r" / "grid.png").exists()
    assert_one_line_error(run("experiments.restore", f"--run={heat_runs['blurring']}", "--degradation=blur",
                              expect_ok=False), "is a blurring run")
    assert_one_line_error(run("experiments.compare_filters", f"--heat_run={heat_runs['blurring']}", "--degradations=blur",
                              f"--out={tmp_path / 'no'}", expect_ok=False), "is a blurring run")


@pytest.mark.parametrize("args, needles", [
    (("experiments.train_ddpm", f"--config={TINY}", "--config.data.dataset=imagenet"), ("imagenet", "mnist_sample")),
    (("experiments.train_ddpm", f"--config={TINY}", "--config.train.batch_size=0"),
     ("config.train.batch_size = 0: must be an integer >= 1",)),
    (("experiments.train_ddpm", f"--config={TINY}", "--config.optim.lr=-0.1"), ("config.optim.lr = -0.1",)),
    (("experiments.train_ddpm", f"--config={TINY}", "--config.model.groups=3"), ("config.model.groups = 3",)),
    (("experiments.train_ddpm", f"--config={TINY}:ihdm", "--config.diffusion.process=heat"),
     ("config.diffusion.process = 'heat'", "ihdm")),
    (("experiments.train_ddpm", f"--config={TINY}:ihdm", "--config.diffusion.blur_sigma_min=30.0"),
     ("config.diffusion.blur_sigma_max = 20.0",)),
    (("experiments.train_ddpm", f"--config={TINY}:vae"), ("vae", "blurring")),
    (("experiments.sample", "--sampler=euler"), ("euler",)),
    (("experiments.sample", "--steps=21"), ("steps must be in [1, T=20]",)),
    (("experiments.sample", "--steps=0"), ("--steps=0",)),
    (("experiments.sample", "--num=0"), ("--num=0", "positive")),
    (("experiments.sample", "--eta=-1"), ("--eta=-1", "non-negative")),
    (("experiments.sample", "--batch_size=0"), ("--batch_size=0",)),
    (("experiments.restore", "--posterior_samples=0"), ("--posterior_samples=0",)),
    (("experiments.restore", "--num=0"), ("--num=0",)),
    (("experiments.compare_filters", "--num=0"), ("--num=0",)),
    (("experiments.compare_filters", "--num_val=0"), ("--num_val=0",)),
    (("experiments.compare_filters", "--posterior_samples=0"), ("--posterior_samples=0",)),
    (("experiments.bench", "--steps=0"), ("--steps=0",)),
    (("experiments.sample", "--label=3"), ("class-conditional", "mnist_cond.py")),
    (("experiments.evaluate", "--guidance=2"), ("class-conditional",)),
    (("experiments.evaluate", "--num=1"), ("--num=1",)),
    (("experiments.evaluate", "--sampler=euler"), ("euler",)),
    (("experiments.evaluate", "--sampler=ihdm"), ("gaussian run samples with", "ihdm")),
])
def test_bad_flags_give_one_clear_error_before_any_work(trained, tmp_path, args, needles):
    workdir = trained if args[0] in ("experiments.sample", "experiments.restore", "experiments.evaluate") \
        else tmp_path / "run"
    flag = "--run" if args[0] in ("experiments.sample", "experiments.restore", "experiments.evaluate") else "--out"
    p = run(*args, f"{flag}={workdir}", expect_ok=False)
    assert_one_line_error(p, *needles)
    assert not (tmp_path / "run").exists()


def test_evaluate_scores_samples_into_eval_json_and_training_logs_the_score(trained, tmp_path, digit_cache):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    p = run("experiments.evaluate", f"--run={workdir}", "--sampler=dpmpp_2m", "--steps=3", "--num=16",
            f"--cache_dir={digit_cache}")
    run("experiments.evaluate", f"--run={workdir}", "--sampler=heun", "--steps=2", "--num=16",
        f"--cache_dir={digit_cache}")
    run("experiments.evaluate", f"--run={workdir}", "--sampler=ddim", "--steps=3", "--eta=1", "--num=16",
        f"--cache_dir={digit_cache}")
    results = json.loads((workdir / "eval.json").read_text())   # the key says what made each: none overwritten
    assert sorted(results) == ["ddim_3steps_eta1_n16_seed0", "dpmpp_2m_3steps_n16_seed0", "heun_2steps_n16_seed0"]
    r = results["dpmpp_2m_3steps_n16_seed0"]
    assert r["nfe"] == 3 and results["heun_2steps_n16_seed0"]["nfe"] == 3 and r["num"] == 16
    assert r["fd"] > r["fd_train_vs_test"] > 0 and r["classifier_test_accuracy"] >= 0.95  # a 4-step model
    assert "FD" in p.stdout and (workdir / "eval" / "dpmpp_2m_3steps_n16_seed0.png").exists()
    scored = tmp_path / "scored"
    run("experiments.train_ddpm", f"--config={TINY}", f"--out={scored}", "--noprogress",
        "--config.train.eval_every=2", "--config.train.eval_num=16", DIFFJAX_CACHE=str(digit_cache))
    rows = [json.loads(line) for line in (scored / "scores.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4] and all(np.isfinite(row["fd"]) for row in rows)
    assert_one_line_error(run("experiments.evaluate", f"--run={tmp_path / 'nope'}", expect_ok=False),
                          "not a run directory")


def test_sampling_from_missing_or_empty_run_directory(trained, tmp_path):
    assert_one_line_error(run("experiments.sample", f"--run={tmp_path / 'nope'}", expect_ok=False),
                          "not a run directory")
    (tmp_path / "empty").mkdir()  # a run that wrote its config but never reached a checkpoint
    shutil.copy(trained / "config.json", tmp_path / "empty" / "config.json")
    assert_one_line_error(run("experiments.sample", f"--run={tmp_path / 'empty'}", expect_ok=False),
                          "no checkpoints")


def test_corrupt_checkpoint_falls_back_then_gives_one_clear_error(trained, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    out = tmp_path / "s"
    npz = out / "heun_5steps_seed0.npz"   # the default sampler

    def garble(step):
        for f in (workdir / "checkpoints" / step).rglob("*"):
            if f.is_file() and f.parent.name == "d":
                f.write_bytes(b"garbage")

    garble("4")
    p = run("experiments.sample", f"--run={workdir}", "--steps=5", "--num=8", f"--out={out}")
    assert "checkpoints/4 is damaged" in p.stderr and "from step 2" in p.stdout
    assert np.load(npz)["images"].std() > 0
    garble("2")
    npz.unlink()
    assert_one_line_error(run("experiments.sample", f"--run={workdir}", "--steps=5", f"--out={out}",
                              expect_ok=False), "no intact checkpoint")
    assert not npz.exists()


def test_compare_filters_end_to_end_on_a_tiny_setting(tmp_path):
    out = tmp_path / "cmp"
    run("experiments.compare_filters", "--num=4", "--num_val=2", "--degradations=gaussian,inpaint_box",
        "--methods=degraded,heat,median,harmonic", f"--out={out}")
    results = json.loads((out / "results.json").read_text())
    assert {(r["degradation"], r["method"]) for r in results} == {
        ("gaussian", "degraded"), ("gaussian", "heat"), ("gaussian", "median"), ("inpaint_box", "harmonic")}
    heat = [r for r in results if r["method"] == "heat"]
    raw = [r for r in results if r["method"] == "degraded"]
    assert all(h["psnr"] > d["psnr"] for h, d in zip(heat, raw))  # smoothing beats raw Gaussian noise
    assert "| gaussian | 0.5 |" in (out / "table.md").read_text()
    for name in ("psnr_vs_level.png", "ssim_vs_level.png", "psnr_vs_edginess.png", "examples/gaussian_0.1.png"):
        assert (out / name).stat().st_size > 1000


def test_compare_filters_gives_the_same_numbers_in_two_processes(tmp_path):
    args = ("--num=4", "--num_val=2", "--degradations=salt_pepper,poisson", "--methods=median,tv_l1,heat")
    results = []
    for name in ("a", "b"):
        run("experiments.compare_filters", *args, f"--out={tmp_path / name}")
        rs = json.loads((tmp_path / name / "results.json").read_text())
        results.append([{k: v for k, v in r.items() if "seconds" not in k} for r in rs])
    assert results[0] == results[1] and len(results[0]) == 3 * 3 + 3 * 2


@pytest.mark.parametrize("args, needles", [
    (("--degradations=jpeg",), ("jpeg",)),
    (("--methods=wavelet",), ("wavelet",)),
])
def test_compare_filters_bad_input(tmp_path, args, needles):
    assert_one_line_error(run("experiments.compare_filters", *args, f"--out={tmp_path}", expect_ok=False),
                          *needles)


def test_compare_filters_empty_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    assert_one_line_error(run("experiments.compare_filters", f"--folder={tmp_path / 'imgs'}",
                              f"--out={tmp_path}", expect_ok=False), "no PNG images")


def test_restore_writes_grid_npz_and_metrics(trained, tmp_path):
    out = tmp_path / "r"
    run("experiments.restore", f"--run={trained}", "--degradation=inpaint_box", "--level=12", "--num=2",
        "--posterior_samples=2", "--methods=ddnm", f"--out={out}")
    m = json.loads((out / "metrics.json").read_text())
    assert m["methods"][0]["method"] == "ddnm" and m["methods"][0]["nfe"] == 20
    assert np.load(out / "restore.npz")["ddnm_mean"].shape == (2, 28, 28, 1)
    assert (out / "grid.png").stat().st_size > 1000


@pytest.mark.parametrize("args, needles", [
    (("--degradation=blur", "--methods=repaint"), ("does not restore 'blur'",)),
    (("--degradation=gaussian", "--level=-1"), ("--level for gaussian",)),
    (("--degradation=jpeg",), ("jpeg",)),
])
def test_restore_bad_input_is_one_line(trained, tmp_path, args, needles):
    p = run("experiments.restore", f"--run={trained}", *args, f"--out={tmp_path / 'o'}", expect_ok=False)
    assert_one_line_error(p, *needles)
    assert not (tmp_path / "o").exists()


def test_restore_without_checkpoint_is_one_line(tmp_path):
    p = run("experiments.restore", f"--run={tmp_path}", expect_ok=False)
    assert_one_line_error(p, "not a run directory")


def test_compare_filters_with_diffusion_rows(trained, tmp_path):
    out = tmp_path / "cmp"
    run("experiments.compare_filters", "--num=2", "--num_val=2", "--degradations=inpaint_box",
        "--methods=harmonic", f"--run={trained}", "--diffusion_methods=ddnm,repaint", "--posterior_samples=2",
        f"--out={out}")
    methods = {r["method"]: r for r in json.loads((out / "results.json").read_text())}
    assert {"harmonic", "ddnm (sample)", "ddnm (mean of 2)", "repaint (sample)", "repaint (mean of 2)"} <= set(methods)
    assert methods["ddnm (sample)"]["nfe"] == 20 and methods["ddnm (sample)"]["seconds_per_image"] > 0
    assert "| inpaint_box | 12 | harmonic |" in (out / "versus.md").read_text()


@pytest.mark.slow
def test_restore_folder_with_a_non_png_file_is_one_line(trained, tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "digit.jpg").write_bytes(b"\xff\xd8\xff")
    p = run("experiments.restore", f"--run={trained}", f"--folder={tmp_path / 'imgs'}", expect_ok=False)
    assert_one_line_error(p, "digit.jpg", "not PNG")


def test_train_pde_then_compare_filters_adds_the_learned_rows(tmp_path):
    pde = tmp_path / "pde"
    run("experiments.train_pde", "--degradations=salt_pepper", "--levels=0.2", "--models=lambda,p1", "--cells=4",
        "--train_steps=3", "--pde_steps=4", f"--out={pde}", "--noprogress")
    for name in ("lambda", "p1_n4"):
        log = (pde / name / "salt_pepper_0.2" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in log] == [0, 3]
    out = tmp_path / "cmp"
    run("experiments.compare_filters", "--num=4", "--num_val=2", "--degradations=salt_pepper",
        "--methods=perona_malik_rational,median", f"--pde_run={pde}", f"--out={out}")
    results = json.loads((out / "results.json").read_text())
    learned = {r["method"] for r in results if r.get("learned")}
    assert learned == {"learned_lambda", "p1_n4"}
    assert all(r["level"] == 0.2 for r in results if r.get("learned"))   # trained at 0.2 only
    table = (out / "learned.md").read_text()
    assert "| salt_pepper | 0.2 | " in table and "perona_malik_rational" in table and "| salt_pepper | 0.1 |" not in table


@pytest.mark.parametrize("args, needles", [
    (("--degradations=downsample",), ("downsample", "does not restore")),
    (("--models=lambda,tv",), ("tv",)),
    (("--levels=0.1,x",), ("--levels must be numbers",)),
])
def test_train_pde_bad_input(tmp_path, args, needles):
    assert_one_line_error(run("experiments.train_pde", *args, f"--out={tmp_path / 'pde'}", expect_ok=False),
                          *needles)
    assert not (tmp_path / "pde").exists()


def test_compare_filters_with_an_empty_pde_directory(tmp_path):
    assert_one_line_error(run("experiments.compare_filters", f"--pde_run={tmp_path}", "--degradations=gaussian",
                              f"--out={tmp_path / 'cmp'}", expect_ok=False), "no learned diffusion runs",
                          "train_pde")
