import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.extend.random import threefry_2x32

from diffjax.nn.dropout import dropout, threefry2x32
from diffjax.nn.layers import ResBlock
from diffjax.parallel import batch_sharded, make_mesh


def test_threefry_equals_jax_hash():
    key = jax.random.bits(jax.random.PRNGKey(5), (2,), jnp.uint32)
    counts = jax.random.bits(jax.random.PRNGKey(6), (2, 999), jnp.uint32)
    y0, y1 = jax.jit(threefry2x32)(key[0], key[1], counts[0], counts[1])
    np.testing.assert_array_equal(np.concatenate([y0, y1]), threefry_2x32(key, counts.reshape(-1)))


@pytest.mark.parametrize("shape, rate", [((4, 28, 28, 16), 0.1), ((3, 5, 7), 0.5), ((1000,), 0.3), ((17, 4), 0.9),
                                         ((64,), 0.1234567), ((), 0.5)])
@pytest.mark.parametrize("make_key", [jax.random.PRNGKey, jax.random.key,
                                      lambda s: jax.random.fold_in(jax.random.key(s), 7)])
def test_mask_equals_flax_dropout_bit_for_bit(shape, rate, make_key):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    key = make_key(len(shape))
    expected = nnx.Dropout(rate)(x, deterministic=False, rngs=key)
    np.testing.assert_array_equal(jax.jit(dropout, static_argnums=1)(x, rate, key), expected)


def test_keep_fraction_and_scale():
    x = jnp.ones((200_000,))
    y = np.asarray(dropout(x, 0.25, jax.random.key(1)))
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    kept = (y > 0).mean()
    assert abs(kept - 0.75) < 4 * np.sqrt(0.75 * 0.25 / x.size)   # 4 binomial standard deviations


def test_sharded_over_eight_devices_equals_unsharded(devices):
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 7, 7, 8))
    key = jax.random.key(3)
    sharding = batch_sharded(make_mesh(devices))
    sharded = jax.jit(lambda x: dropout(x, 0.3, key), in_shardings=sharding, out_shardings=sharding)(x)
    assert len(sharded.sharding.device_set) == 8
    np.testing.assert_array_equal(sharded, dropout(x, 0.3, key))


def test_res_block_trains_with_the_flax_dropout_mask():
    block = ResBlock(8, 8, 16, 4, 0.4, rngs=nnx.Rngs(0))
    block.conv2.kernel[...] = jax.random.normal(jax.random.PRNGKey(2), block.conv2.kernel.shape)   # not ~0 as at init
    x, temb = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 6, 8)), jnp.ones((2, 16))
    h = block.conv1(block.norm1(x, silu=True)) + block.temb(nnx.silu(temb))[:, None, None, :]
    h = nnx.Dropout(0.4)(block.norm2(h, silu=True), deterministic=False, rngs=nnx.Rngs(dropout=9))
    np.testing.assert_array_equal(block(x, temb, train=True, rngs=nnx.Rngs(dropout=9)), x + block.conv2(h))


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_bad_rate_is_rejected(rate):
    with pytest.raises(ValueError, match="dropout rate"):
        dropout(jnp.ones(3), rate, jax.random.key(0))


def test_non_threefry_key_is_rejected():
    with pytest.raises(ValueError, match="threefry2x32 key"):
        dropout(jnp.ones(3), 0.1, jax.random.key(0, impl="rbg"))
