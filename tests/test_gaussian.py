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
