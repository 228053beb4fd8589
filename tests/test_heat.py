"""The heat semigroup and the two heat-equation processes, checked against independent computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
import scipy.ndimage as ndi

from diffjax import gaussian, heat, samplers, schedules


def _images(shape=(3, 16, 12, 2), seed=0):
    return jax.random.uniform(jax.random.PRNGKey(seed), shape, minval=-1.0, maxval=1.0)


def test_semigroup_and_mass_conservation():
    x = _images()
    np.testing.assert_allclose(heat.heat(heat.heat(x, 0.7), 1.9), heat.heat(x, 2.6), atol=1e-5)
    np.testing.assert_allclose(heat.heat(x, 3.0).sum(axis=(1, 2)), x.sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(heat.heat(x, 0.0), x, atol=1e-6)


def test_heat_is_a_gaussian_filter_per_image_time():
    x = _images((2, 40, 40, 1))
    out = heat.heat(x, jnp.array([0.0, 4.5]))
    ref = ndi.gaussian_filter(np.asarray(x[1, ..., 0]), 3.0, mode="reflect", truncate=6.0)
    np.testing.assert_allclose(out[0], x[0], atol=1e-6)
    np.testing.assert_allclose(out[1, ..., 0], ref, atol=2e-3)


def test_ihdm_levels_are_log_spaced_blurs_plus_no_blur():
    p = heat.ihdm(100, 0.5, 20.0, 0.02)
    sigmas = np.sqrt(2 * np.asarray(p.times, np.float64))
    assert p.num_timesteps == 101 and sigmas[0] == 0.0
    np.testing.assert_allclose(sigmas[[1, -1]], [0.5, 20.0], rtol=1e-6)
    np.testing.assert_allclose(np.diff(np.log(sigmas[1:])), np.log(40.0) / 99, rtol=1e-4)


def test_ihdm_loss_regresses_the_next_sharper_level():
    p = heat.ihdm(10, 0.5, 8.0, 0.1)
    x0 = _images((64, 12, 12, 1))
    seen = {}

    def zero(u, k):
        seen.update(u=u, k=k)
        return jnp.zeros_like(u)

    loss = heat.ihdm_loss(p, zero, x0, jax.random.PRNGKey(3))
    k, u = np.asarray(seen["k"]), np.asarray(seen["u"])
    assert k.min() >= 1 and k.max() <= 10 and len(set(k)) > 5
    blur = lambda i, level: ndi.gaussian_filter(np.asarray(x0[i, ..., 0]), np.sqrt(2 * float(p.times[level])),  # noqa: E731
                                                mode="reflect", truncate=8.0) if level else np.asarray(x0[i, ..., 0])
    sharper = np.stack([blur(i, k[i] - 1) for i in range(64)])[..., None]
    noise = u - np.stack([blur(i, k[i]) for i in range(64)])[..., None]
    assert abs(noise.std() - 0.1) < 0.01 and abs(noise.mean()) < 0.01   # u~_k = u_k + sigma eps
    np.testing.assert_allclose(loss, np.mean((sharper - u) ** 2), rtol=0.05)
    oracle = lambda u, k: heat.heat(x0, p.times[k - 1]) - u  # noqa: E731
    assert float(heat.ihdm_loss(p, oracle, x0, jax.random.PRNGKey(3))) < 1e-10


def test_ihdm_prior_keeps_every_frequency_the_blur_leaves():
    p = heat.ihdm(5, 0.5, 6.0, 0.01)
    x0 = _images((4, 16, 16, 3))
    coefs = heat.ihdm_prior(p, x0)
    m, n = heat.prior_frequencies(p, 16, 16)
    assert coefs.shape == (4, m, n, 3) and m < 16
    np.testing.assert_allclose(heat.ihdm_prior_images(coefs, x0.shape), heat.heat(x0, p.times[-1]), atol=1e-5)


def test_ihdm_sampler_with_the_exact_residual_returns_the_sharp_image():
    p = heat.ihdm(8, 0.5, 4.0, 0.0)
    x0 = _images((1, 12, 12, 1))
    prior = heat.ihdm_prior(p, x0)
    # With one training image and delta = 0, f(u, k) = heat(x0, t_{k-1}) - u takes the prior back to x0.
    f = lambda u, k: heat.heat(jnp.broadcast_to(x0, u.shape), p.times[k[0] - 1]) - u  # noqa: E731
    x, frames = samplers.ihdm_sample(f, p, jax.random.PRNGKey(0), (2, 12, 12, 1), prior, 0.0, num_frames=3)
    np.testing.assert_allclose(x, jnp.broadcast_to(x0, x.shape), atol=1e-5)
    np.testing.assert_allclose(frames[0], jnp.broadcast_to(heat.heat(x0, p.times[-2]), x.shape), atol=1e-5)


def _no_dissipation():
    s = schedules.linear(50, 1e-3, 0.1)
    return s, heat.blurring(s, 0.0)


def test_blurring_without_dissipation_has_ddpm_marginals():
    s, b = _no_dissipation()
    x0, eps = _images((4, 8, 8, 1)), _images((4, 8, 8, 1), seed=1)
    t = jnp.array([0, 7, 30, 49])
    np.testing.assert_allclose(heat.blurring_q_sample(b, x0, t, eps), gaussian.q_sample(s, x0, t, eps), atol=1e-5)


@pytest.mark.parametrize("t", [0, 1, 25, 49])
def test_blurring_without_dissipation_takes_the_ddpm_step(t):
    s, b = _no_dissipation()
    x, key = _images((4, 8, 8, 1)), jax.random.PRNGKey(5)
    eps_fn = lambda x, t: 0.3 * x + 0.1  # noqa: E731
    tt = jnp.full((4,), t)
    kw = dict(variance="fixed_small", clip_x0=False, eta=0.0)
    ours = samplers._blurring_step(eps_fn, b, x, tt, t - 1, key, **kw)
    x0 = gaussian.predict_x0_from_eps(s, x, tt, eps_fn(x, tt))
    mean, var = gaussian.q_posterior_mean_variance(s, x0, x, tt)
    # The same normal draw, taken in DCT coefficients: var is one number per image, so it commutes with the IDCT.
    expected = mean + jnp.sqrt(var) * heat.idct(jax.random.normal(key, x.shape))
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=1e-4)


def _exact_variances(b, v, h, w):
    """Per DCT frequency, the variance the ancestral sampler gives for data of coefficient variances v
    with the exact predictor, by the linear recursion over its steps (numpy, from the paper's definitions):
    u_0_hat = g u_t, g = alpha_t v / (alpha_t^2 v + sigma_t^2); u_s = (c0 g + ct) u_t + sqrt(var) z."""
    ab = np.concatenate([[1.0], np.asarray(b.schedule.alphas_cumprod, np.float64)])      # index t + 1
    tau = np.concatenate([[0.0], np.asarray(b.tau, np.float64)])
    k = np.pi * np.arange(h) / h, np.pi * np.arange(w) / w
    lam = k[0][:, None] ** 2 + k[1][None, :] ** 2
    alpha = lambda i: np.sqrt(ab[i]) * ((1 - 1e-3) * np.exp(-lam * tau[i]) + 1e-3 if i else 1.0)  # noqa: E731
    var = np.ones((h, w))
    for i in range(len(ab) - 1, 0, -1):      # t = i - 1 down to 0, s = t - 1
        a_t, a_s, s2_t, s2_s = alpha(i), alpha(i - 1), 1 - ab[i], 1 - ab[i - 1]
        s2_ts = s2_t - (a_t / a_s) ** 2 * s2_s
        c0, ct, post = a_s * s2_ts / s2_t, (a_t / a_s) * s2_s / s2_t, s2_ts * s2_s / s2_t
        var = (c0 * a_t * v / (a_t**2 * v + s2_t) + ct) ** 2 * var + post
    return var


def test_blurring_sampler_with_the_exact_eps_reproduces_gaussian_data_per_frequency(optimised):
    """Data x0 = IDCT(sqrt(v) z): independent DCT coefficients of variances v. Then u_t ~ N(0, alpha_t^2 v +
    sigma_t^2) per frequency and the MMSE noise prediction is E[eps | u_t] = sigma_t u_t / (alpha_t^2 v + sigma_t^2)."""
    h = w = 8
    lam = np.asarray(heat.frequencies_squared(h, w))
    v = 0.5 * np.exp(-4.0 * lam) + 0.02                   # image-like: the low frequencies dominate
    b = heat.blurring(schedules.cosine(1000), 3.0)

    def eps_fn(x, t):
        alpha, sigma2 = heat.blurring_alpha_sigma(b, t, h, w)
        return heat.idct(jnp.sqrt(sigma2) * heat.dct(x) / (alpha**2 * v[None, :, :, None] + sigma2))

    sample = optimised(lambda key: samplers.blurring_sample(eps_fn, b, key, (4000, h, w, 1), clip_x0=False))
    x = sample(jax.random.PRNGKey(0))
    got = np.asarray(heat.dct(x), np.float64).var(axis=(0, 3))
    expected = _exact_variances(b, v, h, w)
    # 4000 draws: a variance's standard error is sqrt(2 / 4000) = 2.2%, so 11% is 5 standard errors.
    np.testing.assert_allclose(got, expected, rtol=0.11)
    assert abs(np.log(got / expected).mean()) < 0.01
    # Ancestral sampling keeps x0_hat's mean but not its spread: O(1/T) too little variance where the data's
    # variance is small (up to 17% at T = 200); at T = 1000 the data's variances themselves, within 10%.
    np.testing.assert_allclose(expected, v, rtol=0.1)


def test_dct_is_the_orthonormal_dct_ii():
    x = np.asarray(_images((2, 6, 5, 1)))
    np.testing.assert_allclose(heat.dct(x), scipy.fft.dctn(x, type=2, axes=(1, 2), norm="ortho"), atol=1e-5)
    np.testing.assert_allclose(heat.idct(x), scipy.fft.idctn(x, type=2, axes=(1, 2), norm="ortho"), atol=1e-5)


@pytest.mark.parametrize("f", [2, 4])
def test_block_dct_is_the_dct_ii_of_each_tile(f):
    x = np.asarray(_images((2, 8, 12, 3)))
    tiles = x.reshape(2, 8 // f, f, 12 // f, f, 3)
    expected = scipy.fft.dctn(tiles, type=2, axes=(2, 4), norm="ortho").reshape(x.shape)
    np.testing.assert_allclose(heat.dct(x, block=f), expected, atol=1e-5)
    np.testing.assert_allclose(heat.idct(heat.dct(x, block=f), block=f), x, atol=1e-5)
    with pytest.raises(ValueError, match="does not tile"):
        heat.dct(x, block=5)


@pytest.mark.parametrize("args", [(0, 0.5, 20.0, 0.01), (10, 0.0, 20.0, 0.01), (10, 5.0, 1.0, 0.01)])
def test_ihdm_levels_out_of_range_are_rejected(args):
    with pytest.raises(ValueError, match="IHDM needs"):
        heat.ihdm(*args)
