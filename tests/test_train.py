import json
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffjax import checkpoint, data, parallel, preemption, processes, train
from experiments.configs import tiny


def _eval_losses(graphdef, cfg, images_u8, *params):
    """The run's process's loss on fixed images, timesteps and noise (no dropout), for each of `params`."""
    p, x0 = processes.make(cfg), data.to_float(images_u8)

    @jax.jit
    def loss(params):
        model = nnx.merge(graphdef, params)
        return processes.loss(cfg, p, lambda x, t: model(x, t), x0, jax.random.PRNGKey(9))

    return [float(loss(q)) for q in params]


def _params(workdir, cfg):
    graphdef, abstract = train.abstract_state(cfg)
    mngr = checkpoint.manager(workdir, create=False)
    state = checkpoint.restore(mngr, abstract._asdict())
    mngr.close()
    return state


def test_training_lowers_the_loss(tiny_cfg, tmp_path):
    tiny_cfg.train.update(steps=40, sample_every=1000, ckpt_every=1000, log_every=10)
    mesh = parallel.make_mesh()
    graphdef, state0, _ = train.init_state(tiny_cfg, mesh)
    state = train.run(tiny_cfg, tmp_path, mesh=mesh, progress=False)
    test = data.mnist_sample("test").images[::20]
    before, after = _eval_losses(graphdef, tiny_cfg, test, state0.params, state.params)
    assert after < 0.7 * before, (before, after)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [10, 20, 30, 40]


def _straight_and_resumed(cfg, tmp_path):
    """The checkpointed states of a run straight to cfg.train.steps (checkpoints halfway and at the end) and of a
    copy of its directory as if it had died after the halfway checkpoint (the later one deleted), run again."""
    train.run(cfg, tmp_path / "straight", progress=False)
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    assert cfg.train.ckpt_every * 2 == cfg.train.steps
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / str(cfg.train.steps))
    train.run(cfg, tmp_path / "resumed", progress=False)
    logged = {d: (tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("straight", "resumed")}
    first_half = [ln for ln in logged["straight"] if json.loads(ln)["step"] <= cfg.train.ckpt_every]
    assert first_half and logged["resumed"][:len(first_half)] == first_half  # restored, not retrained (steps/s differ)
    return _params(tmp_path / "straight", cfg), _params(tmp_path / "resumed", cfg)


def test_resumed_run_equals_uninterrupted_run(tiny_cfg, tmp_path):
    tiny_cfg.train.update(steps=4, ckpt_every=2, sample_every=1000)
    a, b = _straight_and_resumed(tiny_cfg, tmp_path)
    assert int(a["step"]) == int(b["step"]) == 4
    jax.tree.map(np.testing.assert_array_equal, a, b)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize("decay", ["cosine", "constant", None])
def test_learning_rate_is_the_closed_form(tiny_cfg, decay):
    """Linear warm-up, then cosine to 0 at the last step or constant (also when the field is absent, as in run
    directories written before it existed)."""
    tiny_cfg.optim.update(lr=2e-3, warmup_steps=10)
    tiny_cfg.train.steps = 110
    with tiny_cfg.unlocked():
        if decay is None:
            del tiny_cfg.optim["decay"]
        else:
            tiny_cfg.optim.decay = decay
    k = np.arange(111)
    after = 2e-3 * (1 + np.cos(np.pi * (k - 10) / 100)) / 2 if decay == "cosine" else np.full(k.shape, 2e-3)
    lr = train.learning_rate(tiny_cfg)
    np.testing.assert_allclose([float(lr(i)) for i in k], np.where(k < 10, 2e-3 * k / 10, after), rtol=1e-5,
                               atol=1e-9)


def test_eight_devices_step_equals_one_device_step(tiny_cfg, devices):
    tiny_cfg.model.dropout = 0.0
    ds = data.mnist_sample("test")
    results = []
    for mesh in (parallel.make_mesh(devices[:1]), parallel.make_mesh(devices)):
        graphdef, state, _ = train.init_state(tiny_cfg, mesh)
        step = train.make_train_step(graphdef, tiny_cfg, mesh)
        images, labels = data.device_put(ds, parallel.replicated(mesh))
        for _ in range(2):
            state, metrics = step(state, images, labels)
        results.append((state, metrics))
    (one, m1), (eight, m8) = results
    assert len(eight.params["conv_in"]["kernel"].sharding.device_set) == 8
    np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), one, eight)


def test_batch_not_divisible_by_devices_is_rejected(tiny_cfg, devices):
    tiny_cfg.train.batch_size = 12
    graphdef, _, _ = train.init_state(tiny_cfg, parallel.make_mesh(devices[:1]))
    with pytest.raises(ValueError, match="multiple of the number of devices"):
        train.make_train_step(graphdef, tiny_cfg, parallel.make_mesh(devices))


def _patched_step(monkeypatch, on_step):
    real = train.make_train_step

    def make(graphdef, cfg, mesh):
        step = real(graphdef, cfg, mesh)
        return jax.jit(lambda state, images, labels: on_step(*step(state, images, labels)))

    monkeypatch.setattr(train, "make_train_step", make)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    tiny_cfg.train.update(steps=6, ckpt_every=2, sample_every=1000, log_every=1000)
    _patched_step(monkeypatch, lambda s, m: (s, {**m, "loss": jnp.where(s.step >= 3, jnp.nan, m["loss"])}))
    with pytest.raises(train.NonFiniteLossError, match="step 3.*last good checkpoint \\(step 2\\)"):
        train.run(tiny_cfg, tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]


def test_a_run_that_died_before_its_first_checkpoint_starts_again_on_its_directory(tiny_cfg, tmp_path, monkeypatch):
    tiny_cfg.train.update(steps=4, ckpt_every=2, sample_every=1000)
    _patched_step(monkeypatch, lambda s, m: (s, {**m, "loss": m["loss"] * jnp.nan}))
    with pytest.raises(train.NonFiniteLossError, match="step 1"):
        train.run(tiny_cfg, tmp_path, progress=False)
    assert not list((tmp_path / "checkpoints").iterdir())
    monkeypatch.undo()
    assert int(train.run(tiny_cfg, tmp_path, progress=False).step) == 4
    assert [json.loads(ln)["step"] for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("log_every", [1, 100])
def test_a_signal_saves_a_checkpoint_before_exiting(tiny_cfg, tmp_path, monkeypatch, log_every, signum):
    """Ctrl-C (SIGINT) or SIGTERM as the 4th step finishes: the loop sees it after its next step and saves that
    one, step 5, whether every step syncs (log_every 1) or not. The handlers are the caller's again afterwards."""
    saved = 5
    tiny_cfg.train.update(steps=6, ckpt_every=100, sample_every=1000, log_every=log_every)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    class SignalAt4(train.tqdm):
        calls = 0

        def update(self, n=1):   # called once per finished step (a disabled bar keeps no count itself)
            super().update(n)
            SignalAt4.calls += n
            if SignalAt4.calls == 4:
                os.kill(os.getpid(), signum)

    monkeypatch.setattr(train, "tqdm", SignalAt4)
    with pytest.raises(preemption.Interrupted, match=f"{signal.Signals(signum).name}: checkpoint of step {saved} "
                                                     f"saved") as e:
        train.run(tiny_cfg, tmp_path, progress=False)
    assert e.value.signum == signum
    assert int(_params(tmp_path, tiny_cfg)["step"]) == saved
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_grid_is_drawn_after_its_steps_checkpoint_and_a_missing_last_grid_is_drawn_again(tiny_cfg, tmp_path,
                                                                                          monkeypatch):
    """A SIGTERM while a grid is drawn loses no training: the step's checkpoint is on disk first. A run stopped
    while drawing its last grid draws it again, the same image, without training."""
    tiny_cfg.train.update(steps=4, ckpt_every=100, sample_every=3, log_every=1)
    seen, real = [], train.default_samples

    def spy(*args, **kwargs):
        with checkpoint.manager(tmp_path, create=False) as mngr:
            seen.append(checkpoint.steps(mngr)[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "default_samples", spy)
    train.run(tiny_cfg, tmp_path, progress=False)
    assert seen == [3, 4]
    last = tmp_path / "samples" / "step_0000004.png"
    drawn, metrics = last.read_bytes(), (tmp_path / "metrics.jsonl").read_text()
    last.unlink()
    seen.clear()
    train.run(tiny_cfg, tmp_path, progress=False)
    assert seen == [4] and last.read_bytes() == drawn and (tmp_path / "metrics.jsonl").read_text() == metrics


def test_run_directory_with_other_model_is_refused(tiny_cfg, tmp_path):
    tiny_cfg.train.update(steps=1, sample_every=1000)
    train.run(tiny_cfg, tmp_path, progress=False)
    tiny_cfg.model.ch = 16
    with pytest.raises(ValueError, match="different model config"):
        train.run(tiny_cfg, tmp_path, progress=False)


def test_cifar10_config_trains_on_mock_tfds_data(tmp_path):
    """The CIFAR-10 path (TFDS, 32x32 RGB, random flips) end to end; the network is shrunk to a tiny one here
    (the full 35.7M-parameter network's shapes are checked in test_unet, without compiling it)."""
    import tensorflow_datasets as tfds

    from experiments.configs import cifar10

    cfg = cifar10.get_config()
    cfg.model.update(tiny.get_config().model, attn_resolutions=(16,))
    cfg.train.update(steps=1, batch_size=8, num_sample_images=8, sample_steps=1)
    with tfds.testing.mock_data(num_examples=16):
        state = train.run(cfg, tmp_path, progress=False)
        assert int(state.step) == 1 and (tmp_path / "samples" / "step_0000001.png").exists()
        assert np.isfinite(json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["loss"])
        # its samples are scored by FID, with Inception weights from a local file (random ones here)
        from diffjax import evaluation
        from test_inception import _random_state_dict
        with pytest.raises(ValueError, match="--inception"):
            evaluation.evaluate(tmp_path, steps=1, num=4, progress=False)
        _random_state_dict(tmp_path / "inception.npz")
        key, r = evaluation.evaluate(tmp_path, steps=1, num=4, batch_size=4, progress=False,
                                   inception_weights=tmp_path / "inception.npz")
    assert np.isfinite(r["fid"]) and r["fid"] > 0 and np.isfinite(r["fid_train_vs_test"])
    assert json.loads((tmp_path / "eval.json").read_text())[key]["fid"] == r["fid"]


def test_unknown_dataset_rejected():
    with pytest.raises(ValueError, match="mnist_sample"):
        data.load("imagenet")


def test_mnist_sample_split_is_by_index_within_class():
    train_ds, test_ds = data.mnist_sample("train"), data.mnist_sample("test")
    assert train_ds.images.shape == (4000, 28, 28, 1) and test_ds.images.shape == (1000, 28, 28, 1)
    assert train_ds.images.dtype == np.uint8 and train_ds.images.max() == 255
    np.testing.assert_array_equal(np.bincount(test_ds.labels), [100] * 10)
    np.testing.assert_array_equal(train_ds.labels[:400], 0)


@pytest.mark.parametrize("process", ["ihdm", "blurring"])
def test_heat_process_training_lowers_its_loss_and_resumes_exactly(tmp_path, process):
    cfg = tiny.get_config(process)
    cfg.train.update(steps=30, ckpt_every=15, sample_every=30, log_every=15)
    graphdef, state0, _ = train.init_state(cfg, parallel.make_mesh())
    a, b = _straight_and_resumed(cfg, tmp_path)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    test = data.mnist_sample("test").images[::20]
    before, after = _eval_losses(graphdef, cfg, test, state0.params, a["params"])
    assert after < 0.7 * before, (before, after)
    assert (tmp_path / "straight" / "samples" / "step_0000030.png").exists()
    assert (tmp_path / "straight" / "prior.npz").exists() == (process == "ihdm")
