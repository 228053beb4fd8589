import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from diffjax import classical, data, degrade


@pytest.fixture(scope="module")
def digits():
    return data.mnist_sample("test").images[::100][:4].astype(np.float32) / 255.0


@pytest.mark.parametrize("t", [0.5, 2.0])
def test_heat_equals_gaussian_filter_of_sigma_sqrt_2t(t):
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(0), (1, 40, 40, 1)))
    ours = np.asarray(classical.heat(x, t))[0, ..., 0]
    ref = ndi.gaussian_filter(x[0, ..., 0], np.sqrt(2 * t), mode="reflect", truncate=6.0)
    # The DCT solves the continuous heat equation; a sampled Gaussian differs by O(e^{-2 pi^2 sigma^2}).
    np.testing.assert_allclose(ours, ref, atol=2e-2 if t < 1 else 2e-3)


@pytest.mark.parametrize("diffusivity", sorted(classical.DIFFUSIVITIES))
def test_perona_malik_preserves_mean_and_lowers_total_variation(digits, diffusivity):
    noisy = degrade.degrade("gaussian", 0.2, jax.random.PRNGKey(1), jnp.asarray(digits)).y
    out = classical.perona_malik(noisy, 0.2, steps=20, dt=0.25, diffusivity=diffusivity)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), noisy.mean(axis=(1, 2, 3)), atol=1e-5)
    tv = lambda u: jnp.abs(jnp.diff(u, axis=1)).sum() + jnp.abs(jnp.diff(u, axis=2)).sum()  # noqa: E731
    assert float(tv(out)) < 0.6 * float(tv(noisy))


def test_perona_malik_is_differentiable_in_kappa(digits):
    noisy = degrade.degrade("gaussian", 0.2, jax.random.PRNGKey(1), jnp.asarray(digits)).y
    loss = lambda kappa: jnp.mean((classical.perona_malik(noisy, kappa, steps=5) - digits) ** 2)  # noqa: E731
    g = jax.grad(loss)(0.2)
    eps = 1e-3
    fd = (loss(0.2 + eps) - loss(0.2 - eps)) / (2 * eps)
    assert np.isfinite(g) and abs(float(g) - float(fd)) < 1e-2 * abs(float(fd)) + 1e-6


def test_harmonic_inpainting_keeps_known_pixels_and_fills_linear_ramps_exactly():
    ramp = jnp.tile(jnp.linspace(0, 1, 16)[None, None, :, None], (1, 16, 1, 1))
    mask = degrade.box_mask(ramp.shape, 6)
    out = classical.harmonic_inpaint(ramp * mask, mask, iterations=2000)
    np.testing.assert_allclose(out, ramp, atol=1e-3)  # a linear function is harmonic


@pytest.mark.parametrize("name", sorted(classical.METHODS))
def test_every_registered_method_restores_a_tiny_batch(digits, name):
    method = classical.METHODS[name]
    kind = method.applies_to[0]
    obs = degrade.degrade(kind, degrade.DEFAULT_LEVELS[kind][0], jax.random.PRNGKey(2), jnp.asarray(digits[:2]))
    out = classical.restore(name, obs, **method.grid[0])
    assert out.shape == digits[:2].shape and np.isfinite(np.asarray(out)).all()
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_unknown_method_and_wrong_degradation_rejected(digits):
    with pytest.raises(ValueError, match="bm3d"):
        classical.get("gaussian_process")
    obs = degrade.degrade("blur", 1.0, jax.random.PRNGKey(0), jnp.asarray(digits))
    with pytest.raises(ValueError, match="does not apply"):
        classical.restore("median", obs, size=3)
