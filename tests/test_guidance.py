"""Class-conditional sampling with classifier-free guidance (Ho & Salimans 2022)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffjax import generate, processes, train
from experiments.configs import tiny


@pytest.fixture(scope="module")
def conditional():
    cfg = tiny.get_config()
    cfg.model.num_classes = 10
    graphdef, params = nnx.split(train.make_model(cfg, jax.random.PRNGKey(0)))
    rng = np.random.default_rng(0)  # random weights everywhere (the output layer starts at zero)
    params = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 0.2, p.dtype), params)
    return cfg, graphdef, params


def test_guided_eps_is_the_weighted_difference_of_conditional_and_null_predictions(conditional):
    cfg, graphdef, params = conditional
    s = processes.make(cfg)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 28, 28, 1))
    t, y = jnp.array([3, 7, 11, 19]), jnp.array([0, 3, 3, 9])
    cond = generate.eps_fn(graphdef, params, s, labels=y)(x, t)
    null = generate.eps_fn(graphdef, params, s, labels=jnp.full(4, 10))(x, t)
    guided = generate.eps_fn(graphdef, params, s, labels=y, guidance=2.0)(x, t)
    assert not np.allclose(cond, null)
    np.testing.assert_allclose(guided, 3.0 * cond - 2.0 * null, atol=1e-5)
    np.testing.assert_array_equal(generate.eps_fn(graphdef, params, s, labels=y, guidance=0.0)(x, t), cond)


def test_sampling_with_labels_and_guidance(conditional):
    cfg, graphdef, params = conditional
    s = processes.make(cfg)
    kw = dict(sampler="ddim", steps=3, batch_size=8)
    a = generate.sample(graphdef, params, s, jax.random.PRNGKey(0), 12, (28, 28, 1), labels=np.arange(12) % 10,
                        guidance=1.5, **kw)
    b = generate.sample(graphdef, params, s, jax.random.PRNGKey(0), 12, (28, 28, 1), labels=np.arange(12) % 10,
                        **kw)
    assert a.shape == b.shape == (12, 28, 28, 1) and np.isfinite(a).all() and not np.allclose(a, b)


def test_class_labels_rows_per_class_and_bad_requests():
    labels, ncols = generate.class_labels(10, None, 0.0, 25)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 3)[:25])
    assert ncols == 3
    assert generate.class_labels(0, None, 0.0, 8) == (None, None)
    np.testing.assert_array_equal(generate.class_labels(10, 4, 2.0, 3)[0], [4, 4, 4])
    with pytest.raises(ValueError, match="class-conditional"):
        generate.class_labels(0, 3, 0.0, 8)
    with pytest.raises(ValueError, match="class-conditional"):
        generate.class_labels(0, None, 1.0, 8)
    with pytest.raises(ValueError, match="classes 0..9"):
        generate.class_labels(10, 10, 0.0, 8)
