"""Learned anisotropic diffusion: the scheme, the P1 functions, the border labels, training and resuming."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffjax import checkpoint, classical, degrade, learned_pde, metrics


def _images(key, b=4, side=12):
    """Smooth random images in [0, 1] with edges: thresholded blurred noise, plus noise."""
    z = classical.heat(jax.random.uniform(key, (b, side, side, 1)), 1.0)
    return jnp.clip((z > jnp.median(z)).astype(jnp.float32) + 0.1 * jax.random.normal(key, z.shape), 0.0, 1.0)


def _model(model, **kw):
    return learned_pde.make_model(learned_pde.Config(model=model, **kw), jax.random.PRNGKey(0))


def test_p1_is_continuous_and_affine_on_each_cell_and_matches_interpolation():
    values = jnp.asarray([1.0, 0.3, -0.4, 0.8, 0.1])
    n = len(values) - 1
    s = jnp.linspace(-0.2, 1.2, 1401)
    np.testing.assert_allclose(learned_pde.p1(s, values), np.interp(np.clip(s, 0, 1), np.linspace(0, 1, n + 1),
                                                                    values), atol=1e-6)
    nodes = jnp.arange(n + 1) / n
    for eps in (1e-4, -1e-4):   # both one-sided limits at every node are the node value
        np.testing.assert_allclose(learned_pde.p1(jnp.clip(nodes + eps, 0, 1), values), values, atol=2e-3)
    for i in range(n):          # affine inside a cell: zero second differences
        t = jnp.linspace(i / n + 1e-3, (i + 1) / n - 1e-3, 7)
        np.testing.assert_allclose(jnp.diff(learned_pde.p1(t, values), 2), 0.0, atol=1e-5)


def test_border_labels_mark_both_sides_of_a_step_only():
    x = jnp.zeros((1, 6, 6, 1)).at[:, :, 3:].set(1.0)
    labels = np.asarray(learned_pde.border_labels(x))[0, ..., 0]
    expected = np.zeros((6, 6))
    expected[:, 2] = 1      # forward difference x[:, 3] - x[:, 2] = 1 at column 2
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("model", ["lambda", "p1"])
def test_gradients_through_the_unrolled_scheme_match_finite_differences(model):
    x = _images(jax.random.PRNGKey(0))
    y = jnp.clip(x + 0.1 * jax.random.normal(jax.random.PRNGKey(1), x.shape), 0, 1)
    graphdef, params = nnx.split(_model(model, pde_steps=8))
    zeros = jnp.zeros_like(y)

    def loss(p):
        return jnp.mean((learned_pde.diffuse(nnx.merge(graphdef, p), y, y, zeros, zeros, 8) - x) ** 2)

    grads = jax.grad(loss)(params)
    direction = jax.tree.map(lambda a: jax.random.normal(jax.random.PRNGKey(a.size), a.shape), params)
    analytic = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    eps = 1e-3
    shifted = lambda sign: jax.tree.map(lambda p, d: p + sign * eps * d, params, direction)  # noqa: E731
    numeric = (float(loss(shifted(1))) - float(loss(shifted(-1)))) / (2 * eps)
    assert abs(analytic) > 1e-5
    assert abs(numeric - analytic) < 0.03 * abs(analytic), (numeric, analytic)


def test_forward_diffusion_keeps_the_maximum_principle_and_the_mean():
    """Nonnegative conductances and dt <= 1/4: every step is a convex combination of neighbours, with zero flux
    across the border, so the range shrinks and the mean is conserved (the projection never acts)."""
    y = _images(jax.random.PRNGKey(2))
    m = _model("lambda")
    m.set_start(0.2, 0.99)
    zeros = jnp.zeros_like(y)
    u = learned_pde.diffuse(m, y, y, zeros, zeros, 200)
    np.testing.assert_allclose(u.mean(axis=(1, 2, 3)), y.mean(axis=(1, 2, 3)), atol=1e-5)
    assert float((u.max((1, 2, 3)) - u.min((1, 2, 3))).min()) < float((y.max((1, 2, 3)) - y.min((1, 2, 3))).min())


def test_backward_diffusion_stays_bounded_and_held_pixels_stay():
    """P1 values down to -NEGATIVE sharpen; the projection keeps 1000 steps in the range of u_0."""
    y = _images(jax.random.PRNGKey(3))
    m = _model("p1", cells=4)
    m.nodes[...] = jnp.full(m.nodes.shape, -20.0)   # every node at -NEGATIVE: pure backward diffusion
    m.time[...] = jnp.asarray(20.0)                  # dt = MAX_DT
    assert float(m.values().max()) < -learned_pde.NEGATIVE + 1e-6
    hold = (jax.random.uniform(jax.random.PRNGKey(4), y.shape) < 0.3).astype(jnp.float32)
    u = learned_pde.diffuse(m, y, y, hold, jnp.zeros_like(y), 1000)
    assert bool(jnp.isfinite(u).all())
    lo, hi = y.min((1, 2, 3), keepdims=True), y.max((1, 2, 3), keepdims=True)
    assert bool(((u >= lo - 1e-6) & (u <= hi + 1e-6)).all())
    np.testing.assert_array_equal(np.asarray(u)[np.asarray(hold) > 0], np.asarray(y)[np.asarray(hold) > 0])
    assert float(metrics.edginess(u).mean()) > float(metrics.edginess(y).mean())   # it did sharpen


def test_learned_lambda_is_perona_malik_for_a_constant_prediction():
    """With the encoder's output at 0 the lambda model is classical.perona_malik with the start's lambda and dt."""
    y = _images(jax.random.PRNGKey(5))
    m = _model("lambda", diffusivity="exponential")
    m.set_start(0.1, 0.8)
    zeros = jnp.zeros_like(y)
    expected = jnp.clip(classical.perona_malik(y, 0.1, 30, 0.8 * learned_pde.MAX_DT, "exponential"), 0, 1)
    np.testing.assert_allclose(learned_pde.diffuse(m, y, y, zeros, zeros, 30), expected, atol=1e-5)


def _tiny(model="p1", **kw):
    return learned_pde.Config(**{**dict(model=model, kind="gaussian", level=0.2, cells=4, pde_steps=6,
                                        train_steps=30, batch_size=8), **kw})


def test_training_raises_validation_psnr_and_resumes_exactly(tmp_path):
    cfg = _tiny()
    r = learned_pde.train(tmp_path, cfg, progress=False, checkpoint_every=10)
    run = learned_pde.run_dir(tmp_path, cfg)
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [0, 10, 20, 30]
    assert log[-1]["val_psnr"] > log[0]["val_psnr"] + 0.1, log
    # interrupted after step 20: its last checkpoint is gone; training again resumes from step 20
    shutil.rmtree(run / "checkpoints" / "30")
    resumed = learned_pde.train(tmp_path, cfg, progress=False, checkpoint_every=10)
    for a, b in zip(jax.tree.leaves(r.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    loaded = learned_pde.load(run)
    obs = degrade.degrade("gaussian", 0.2, jax.random.PRNGKey(6), _images(jax.random.PRNGKey(7), side=28))
    np.testing.assert_array_equal(loaded.restore(obs), r.restore(obs))


def test_border_model_trains_with_the_shared_classifier(tmp_path):
    cfg = _tiny("lambda_border", train_steps=4)
    r = learned_pde.train(tmp_path, cfg, progress=False, border_steps=6)
    assert (tmp_path / "border" / "checkpoints" / "6").is_dir()
    border_log = [json.loads(line) for line in (tmp_path / "border" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in border_log] == [0, 6] and 0 < border_log[-1]["val_accuracy"] <= 1
    loaded = learned_pde.load(learned_pde.run_dir(tmp_path, cfg))
    x = _images(jax.random.PRNGKey(8), side=28)
    obs = degrade.degrade("inpaint_random", 0.5, jax.random.PRNGKey(9), x)
    p = loaded.border_probability(obs.y)
    assert p.shape == x.shape and bool(((p >= 0) & (p <= 1)).all())
    np.testing.assert_array_equal(loaded.restore(obs), r.restore(obs))
    c = loaded.coefficients(obs)
    assert c.shape == x.shape and bool(((c > 0) & (c <= 1)).all())


@pytest.mark.parametrize("kw, needle", [
    (dict(model="tv"), "unknown learned model"),
    (dict(kind="downsample"), "does not restore"),
    (dict(diffusivity="cubic"), "unknown diffusivity"),
    (dict(cells=0), "must be >= 1"),
])
def test_bad_configs_are_one_clear_error(tmp_path, kw, needle):
    with pytest.raises(ValueError, match=needle):
        learned_pde.train(tmp_path, learned_pde.Config(**kw), progress=False)
    assert not any(tmp_path.iterdir())   # nothing written


def test_loading_a_directory_that_is_no_run_is_one_clear_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="train_pde"):
        learned_pde.load(tmp_path)


def test_a_second_config_in_the_same_directory_is_refused(tmp_path):
    learned_pde.train(tmp_path, _tiny(train_steps=2), progress=False)
    with pytest.raises(ValueError, match="another config"):
        learned_pde.train(tmp_path, _tiny(train_steps=3), progress=False)
