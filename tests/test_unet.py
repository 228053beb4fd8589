import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffjax import train
from diffjax.nn import unet
from diffjax.nn.layers import GroupNorm, timestep_embedding
from diffjax.nn.unet import UNet, init_unet, param_count
from experiments.configs import cifar10, mnist, reference


def _abstract_model(cfg):
    return train.make_model(cfg, None)


@pytest.mark.parametrize("get_config, expected", [(cifar10.get_config, 35.7e6), (reference.get_config, 6_469_889)])
def test_parameter_counts_match_the_papers_networks(get_config, expected):
    n = param_count(_abstract_model(get_config()))
    if get_config is reference.get_config:
        assert n == expected
    else:
        assert abs(n - expected) <= 0.5e6, n


@pytest.mark.parametrize("get_config", [cifar10.get_config, mnist.get_config, reference.get_config])
def test_output_shape_equals_input_shape(get_config):
    cfg = get_config()
    graphdef, params = nnx.split(_abstract_model(cfg))
    shape = (2, cfg.data.image_size, cfg.data.image_size, cfg.data.channels)
    out = jax.eval_shape(lambda p, x, t: nnx.merge(graphdef, p)(x, t), params, jax.ShapeDtypeStruct(shape, jnp.float32),
                         jax.ShapeDtypeStruct((2,), jnp.int32))
    assert out.shape == shape and out.dtype == jnp.float32


def test_init_equals_flax_jitted_construction_and_each_call_owns_its_arrays():
    """The one cached initialiser program gives exactly the parameters of flax's own jitted construction (compiled
    alike: other optimisation levels round some initialisers' last bit differently), for every key, from one trace
    per architecture (abstract models included); models of one architecture never share arrays."""
    kw = dict(image_size=8, in_channels=1, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), groups=4)
    flax_init = jax.jit(lambda k: nnx.state(nnx.split(UNet(**kw, rngs=nnx.Rngs(params=k)))[1], nnx.Param),
                        compiler_options={"xla_backend_optimization_level": 0})
    for seed in (0, 1):
        key = jax.random.PRNGKey(seed)
        ours = nnx.state(init_unet(key, **kw), nnx.Param)
        jax.tree.map(np.testing.assert_array_equal, ours, flax_init(key))
    traced = unet._init_program.cache_info().currsize
    a, b = init_unet(jax.random.PRNGKey(0), **kw), init_unet(jax.random.PRNGKey(0), **kw)
    abstract = init_unet(None, **kw)
    assert unet._init_program.cache_info().currsize == traced   # one trace per architecture, abstract ones included
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    a.conv_in.kernel[...] = jnp.zeros_like(a.conv_in.kernel[...])
    assert np.abs(np.asarray(b.conv_in.kernel[...])).sum() > 0


def _small(num_classes=0, dropout=0.0):
    """A small UNet with random weights everywhere (the output layers start near zero otherwise)."""
    model = init_unet(jax.random.PRNGKey(0), image_size=8, in_channels=2, ch=8, ch_mult=(1, 2), num_res_blocks=1,
                      attn_resolutions=(4,), groups=4, num_classes=num_classes, dropout=dropout)
    rng = np.random.default_rng(0)  # numpy: XLA compiles jax.random for ~50 shapes slowly on CPU
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 0.2, p.dtype), params))
    return model


@nnx.jit(static_argnames="train")
def _call(model, x, t, y=None, train=False, key=None):
    return model(x, t, y, train=train, rngs=nnx.Rngs(dropout=key) if train else None)


def test_timestep_changes_output_and_batch_items_are_independent():
    model = _small()
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 2))
    t = jnp.array([0, 10, 500])
    out = _call(model, x, t)
    assert not np.allclose(_call(model, x, t + 1), out, atol=1e-4)
    np.testing.assert_allclose(_call(model, x[1:2], t[1:2]), out[1:2], atol=1e-5)  # GroupNorm never mixes the batch


def test_class_conditioning_and_null_label():
    model = _small(num_classes=10)
    x, t = jnp.ones((2, 8, 8, 2)), jnp.array([5, 5])
    assert not np.allclose(_call(model, x, t, jnp.array([1, 1])), _call(model, x, t, jnp.array([2, 2])))
    np.testing.assert_array_equal(_call(model, x, t), _call(model, x, t, jnp.array([10, 10])))


def test_dropout_only_in_training():
    model = _small(dropout=0.5)
    x, t = jnp.ones((2, 8, 8, 2)), jnp.array([1, 2])
    np.testing.assert_array_equal(_call(model, x, t), _call(model, x, t))
    a = _call(model, x, t, train=True, key=jax.random.PRNGKey(0))
    b = _call(model, x, t, train=True, key=jax.random.PRNGKey(1))
    assert not np.allclose(a, b)


def test_timestep_embedding_matches_formula():
    emb = np.asarray(timestep_embedding(jnp.array([0, 7]), 8))
    freqs = np.exp(-np.log(10000.0) * np.arange(4) / 3)
    np.testing.assert_allclose(emb[1], np.concatenate([np.sin(7 * freqs), np.cos(7 * freqs)]), rtol=1e-5)
    np.testing.assert_allclose(emb[0], [0, 0, 0, 0, 1, 1, 1, 1])


@pytest.mark.parametrize("shape, groups", [((3, 28, 28, 16), 8), ((2, 7, 7, 64), 32), ((2, 5, 6, 32), 4)])
def test_group_norm_matches_flax_and_its_definition(shape, groups):
    c = shape[-1]
    ours, flax_gn = GroupNorm(c, num_groups=groups, rngs=nnx.Rngs(0)), nnx.GroupNorm(c, num_groups=groups,
                                                                                        rngs=nnx.Rngs(0))
    scale, bias = jax.random.normal(jax.random.PRNGKey(1), (2, c))
    for m in (ours, flax_gn):
        m.scale[...], m.bias[...] = scale, bias
    x = 3.0 * jax.random.normal(jax.random.PRNGKey(2), shape) + 1.0
    g = np.asarray(x, np.float64).reshape(shape[0], -1, groups, c // groups)
    normed = (g - g.mean((1, 3), keepdims=True)) / np.sqrt(g.var((1, 3), keepdims=True) + 1e-6)
    expected = normed.reshape(shape) * np.asarray(scale) + np.asarray(bias)
    np.testing.assert_allclose(ours(x), expected, atol=2e-5)
    np.testing.assert_allclose(ours(x), flax_gn(x), atol=2e-5)
    assert jax.tree.structure(nnx.state(ours)) == jax.tree.structure(nnx.state(flax_gn))
    np.testing.assert_allclose(ours(x, silu=True), nnx.silu(flax_gn(x)), atol=2e-5)
    # the closed-form gradients (custom VJP) equal autodiff through flax's GroupNorm, and through it and SiLU,
    # for x, scale and bias
    w = jax.random.normal(jax.random.PRNGKey(3), shape)
    for silu in (False, True):
        layers = [(ours, lambda m, x: m(x, silu=silu)), (flax_gn, lambda m, x: nnx.silu(m(x)) if silu else m(x))]
        grads = [nnx.grad(lambda m, x: jnp.sum(jnp.sin(f(m, x)) * w), argnums=(0, 1))(m, x) for m, f in layers]
        for a, b in zip(*map(jax.tree.leaves, grads)):
            np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.abs(b).max()) + 1e-5)  # float32 rounding: ~4e-6
