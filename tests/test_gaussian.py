import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import gaussian, schedules

S = schedules.linear(100, 1e-3, 0.2)


def _x0_xt_t(key, b=6):
    k1, k2, k3 = jax.random.split(key, 3)
    x0 = jax.random.uniform(k1, (b, 4, 4, 2), minval=-1, maxval=1)
    t = jax.random.randint(k2, (b,), 0, 100)
    return x0, jax.random.normal(k3, x0.shape), t


def test_q_sample_moments_match_closed_form():
    x0 = jnp.full((1, 64, 64, 8), 0.6)
    t = jnp.array([40])
    x_t = gaussian.q_sample(S, x0, t, jax.random.normal(jax.random.PRNGKey(0), x0.shape))
    ab = np.prod(1 - np.linspace(1e-3, 0.2, 100)[:41])
    n = x_t.size
    assert abs(float(x_t.mean()) - np.sqrt(ab) * 0.6) < 4 * np.sqrt((1 - ab) / n)
    assert abs(float(x_t.var()) - (1 - ab)) < 4 * (1 - ab) * np.sqrt(2 / n)


def test_posterior_equals_bayes_rule_product_of_gaussians():
    """q(x_{t-1}|x_t,x_0) ∝ N(x_t; sqrt(a_t) x_{t-1}, b_t) N(x_{t-1}; sqrt(ab_{t-1}) x0, 1-ab_{t-1})."""
    x0, x_t, t = _x0_xt_t(jax.random.PRNGKey(1))
    mean, var = gaussian.q_posterior_mean_variance(S, x0, x_t, t)
    betas = np.linspace(1e-3, 0.2, 100)
    ab = np.cumprod(1 - betas)
    for i, ti in enumerate(np.asarray(t)):
        ab_prev = ab[ti - 1] if ti > 0 else 1.0
        prec = (1 / (1 - ab_prev) if ti > 0 else np.inf) + (1 - betas[ti]) / betas[ti]
        v = 1 / prec
        m = v * ((np.sqrt(ab_prev) * np.asarray(x0[i]) / (1 - ab_prev) if ti > 0 else 0)
                 + np.sqrt(1 - betas[ti]) * np.asarray(x_t[i]) / betas[ti])
        if ti == 0:  # the prior on x_{-1} = x0 is a point mass
            v, m = 0.0, np.asarray(x0[i])
        np.testing.assert_allclose(var[i].ravel(), v, atol=1e-6)
        np.testing.assert_allclose(mean[i], m, rtol=1e-4, atol=1e-5)


def test_prediction_conversions_round_trip():
    x0, eps, t = _x0_xt_t(jax.random.PRNGKey(2))
    x_t = gaussian.q_sample(S, x0, t, eps)
    np.testing.assert_allclose(gaussian.predict_x0_from_eps(S, x_t, t, eps), x0, atol=2e-4)
    np.testing.assert_allclose(gaussian.predict_eps_from_x0(S, x_t, t, x0), eps, atol=2e-3)
    v = gaussian.v_from_x0_eps(S, x0, t, eps)
    np.testing.assert_allclose(gaussian.predict_x0_from_v(S, x_t, t, v), x0, atol=1e-5)
    np.testing.assert_allclose(gaussian.predict_eps_from_v(S, x_t, t, v), eps, atol=1e-5)
    for kind in gaussian.PREDICTIONS:
        target = gaussian.target(S, kind, x0, t, eps)
        np.testing.assert_allclose(gaussian.eps_from_prediction(S, kind, x_t, t, target), eps, atol=2e-3)


@pytest.mark.parametrize("kind", gaussian.PREDICTIONS)
def test_min_snr_weights_are_min_snr_gamma_in_x0_space(kind):
    """Hang et al. 2023: for every target, weight x ||target error||^2 = min(SNR, gamma) ||x0 error||^2, with
    the x0 error of the prediction converted back by the project's own converters; SNR from the betas in float64."""
    gamma = 5.0
    x0, eps, t = _x0_xt_t(jax.random.PRNGKey(7), b=64)
    x_t = gaussian.q_sample(S, x0, t, eps)
    out = gaussian.target(S, kind, x0, t, eps) + 0.1 * jax.random.normal(jax.random.PRNGKey(8), x0.shape)
    err_target = np.sum((np.asarray(out) - np.asarray(gaussian.target(S, kind, x0, t, eps))) ** 2, axis=(1, 2, 3))
    x0_hat = gaussian.predict_x0_from_eps(S, x_t, t, gaussian.eps_from_prediction(S, kind, x_t, t, out))
    err_x0 = np.sum((np.asarray(x0_hat) - np.asarray(x0)) ** 2, axis=(1, 2, 3))
    ab = np.cumprod(1 - np.linspace(1e-3, 0.2, 100))[np.asarray(t)]
    snr = ab / (1 - ab)
    w = np.asarray(gaussian.min_snr_weight(S, kind, t, gamma))
    np.testing.assert_allclose(w * err_target, np.minimum(snr, gamma) * err_x0, rtol=2e-3)
    assert (snr > gamma).any() and (snr < gamma).any()


def test_min_snr_loss_of_a_constant_error_is_the_mean_weight():
    """A model off by c everywhere: loss = c^2 E_t w_t, E_t over the uniform t (4,096 draws)."""
    x0 = jax.random.uniform(jax.random.PRNGKey(3), (4096, 2, 2, 1), minval=-1, maxval=1)
    key = jax.random.PRNGKey(5)
    eps = jax.random.normal(jax.random.split(key)[1], x0.shape)
    off = lambda x_t, tt: eps + 0.5  # noqa: E731  (the loss draws eps from `key` so)
    ab = np.cumprod(1 - np.linspace(1e-3, 0.2, 100))
    w = np.minimum(ab / (1 - ab), 2.0) / (ab / (1 - ab))
    loss = float(gaussian.simple_loss(S, off, x0, key, "eps", min_snr_gamma=2.0))
    assert abs(loss - 0.25 * w.mean()) < 4 * 0.25 * w.std() / np.sqrt(4096)
    assert abs(float(gaussian.simple_loss(S, off, x0, key, "eps")) - 0.25) < 1e-5


def test_simple_loss_is_zero_for_the_oracle_and_one_for_zero_prediction():
    x0 = jax.random.uniform(jax.random.PRNGKey(3), (64, 8, 8, 1), minval=-1, maxval=1)
    key = jax.random.PRNGKey(4)
    t_key, eps_key = jax.random.split(key)
    t = jax.random.randint(t_key, (64,), 0, 100)
    eps = jax.random.normal(eps_key, x0.shape)
    oracle = lambda x_t, tt: eps  # noqa: E731  (the loss draws t and eps from `key` exactly so)
    assert float(gaussian.simple_loss(S, oracle, x0, key)) < 1e-10
    assert abs(float(gaussian.simple_loss(S, lambda x_t, tt: jnp.zeros_like(x_t), x0, key)) - 1.0) < 0.05
    assert np.asarray(t).std() > 0


def test_unknown_prediction_rejected():
    with pytest.raises(ValueError, match="eps"):
        gaussian.target(S, "score", jnp.zeros((1, 2, 2, 1)), jnp.zeros((1,), jnp.int32), jnp.zeros((1, 2, 2, 1)))
