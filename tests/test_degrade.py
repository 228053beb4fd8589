import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import degrade

X = jnp.full((4, 32, 32, 1), 0.4)


def test_gaussian_noise_mean_and_variance():
    y = degrade.degrade("gaussian", 0.2, jax.random.PRNGKey(0), X).y
    n = y.size  # 4096: standard errors 0.2/64 = 0.003 (mean), 0.04 * sqrt(2/n) = 0.0009 (variance)
    assert abs(float(y.mean()) - 0.4) < 4 * 0.2 / np.sqrt(n)
    assert abs(float(y.var()) - 0.04) < 4 * 0.04 * np.sqrt(2 / n)


@pytest.mark.parametrize("peak", [3.0, 30.0])
def test_poisson_mean_is_x_and_variance_is_x_over_peak(peak):
    x = jnp.full((16, 32, 32, 1), 0.4)
    y = np.asarray(degrade.degrade("poisson", peak, jax.random.PRNGKey(1), x).y)
    var = 0.4 / peak
    assert abs(y.mean() - 0.4) < 4 * np.sqrt(var / y.size)
    assert abs(y.var() / var - 1) < 0.05  # 16,384 samples: relative SE of a variance ~ sqrt(2/n) = 0.011


def test_salt_and_pepper_hits_the_requested_fraction_half_salt_half_pepper():
    y = np.asarray(degrade.degrade("salt_pepper", 0.2, jax.random.PRNGKey(2), X).y)
    hit = y != np.float32(0.4)
    assert abs(hit.mean() - 0.2) < 4 * np.sqrt(0.16 / y.size)
    assert abs((y[hit] == 1).mean() - 0.5) < 0.05 and set(np.unique(y[hit])) <= {0.0, 1.0}


@pytest.mark.parametrize("std", [0.7, 1.0, 2.0])
def test_blur_kernel_is_normalised_and_preserves_constants(std):
    k = degrade.gaussian_kernel(std)
    assert abs(float(k.sum()) - 1) < 1e-6 and k.shape[0] % 2 == 1
    np.testing.assert_allclose(degrade.blur_operator(std)(X), X, atol=1e-6)


def _operators():
    key = jax.random.PRNGKey(3)
    return {
        "blur": degrade.blur_operator(1.5),
        "mask_box": degrade.mask_operator(degrade.box_mask((2, 16, 16, 3), 6)),
        "mask_random": degrade.mask_operator(degrade.random_mask(key, (2, 16, 16, 3), 0.5)),
        "downsample_2": degrade.downsample_operator(2),
        "downsample_4": degrade.downsample_operator(4),
    }


@pytest.mark.parametrize("name", sorted(_operators()))
def test_adjoint_identity(name):
    """<A x, y> = <x, A^T y> for random x and y."""
    op = _operators()[name]
    kx, ky = jax.random.split(jax.random.PRNGKey(4))
    x = jax.random.normal(kx, (2, 16, 16, 3))
    y = jax.random.normal(ky, op(x).shape)
    lhs, rhs = float(jnp.vdot(op(x), y)), float(jnp.vdot(x, op.adjoint(y)))
    assert abs(lhs - rhs) < 1e-4 * max(1.0, abs(lhs)), (lhs, rhs)


def test_blur_matches_scipy_gaussian_filter_with_reflect_boundary():
    import scipy.ndimage as ndi

    x = jax.random.uniform(jax.random.PRNGKey(5), (1, 20, 20, 1))
    ours = np.asarray(degrade.blur_operator(1.5)(x))[0, ..., 0]
    ref = ndi.gaussian_filter(np.asarray(x)[0, ..., 0], 1.5, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_downsample_averages_blocks_and_inpainting_masks_hide_pixels():
    x = jax.random.uniform(jax.random.PRNGKey(6), (2, 8, 8, 1))
    np.testing.assert_allclose(degrade.downsample_operator(4)(x)[0, 1, 0, 0], x[0, 4:8, 0:4, 0].mean(), rtol=1e-6)
    obs = degrade.degrade("inpaint_box", 4, jax.random.PRNGKey(0), x)
    assert float(obs.mask.sum()) == 2 * (64 - 16) and float(jnp.abs(obs.y * (1 - obs.mask)).max()) == 0
    obs = degrade.degrade("inpaint_random", 0.8, jax.random.PRNGKey(0), jnp.ones((8, 32, 32, 1)))
    assert abs(1 - float(obs.mask.mean()) - 0.8) < 0.03


@pytest.mark.parametrize("bad, match", [
    (jnp.zeros((4, 4, 1)), "must be \\[B, H, W, C\\]"),
    (jnp.zeros((1, 4, 4, 2)), "C = 1 or 3"),
    (jnp.full((1, 4, 4, 1), 255.0), "values in \\[0, 1\\]"),
])
def test_bad_images_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        degrade.check_images(bad)


def test_unknown_degradation_and_indivisible_size_rejected():
    with pytest.raises(ValueError, match="gaussian"):
        degrade.degrade("jpeg", 1, jax.random.PRNGKey(0), X)
    with pytest.raises(ValueError, match="not divisible"):
        degrade.downsample_operator(3)(X)
