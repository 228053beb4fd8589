"""The Gaussian forward process of DDPM and its parameterisations.

Notation (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"), 0-indexed t:
  q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)                    (Eq. 4)
  q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I),                                     (Eq. 6-7)
    mu~_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
          + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t,
    beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t,  alpha_bar_{-1} = 1.
The network predicts eps, x0, or v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0
(Salimans & Ho 2022, "Progressive Distillation", Sec. 4).
"""

import jax
import jax.numpy as jnp

from diffjax.schedules import Schedule

PREDICTIONS = ("eps", "x0", "v")


def _bcast(a: jnp.ndarray, t: jnp.ndarray, ndim: int) -> jnp.ndarray:
    """a[t] for t: [B], reshaped to [B, 1, ..., 1] to broadcast against rank-`ndim` arrays."""
    return a[t].reshape(t.shape + (1,) * (ndim - t.ndim))


def _coeffs(s: Schedule, t: jnp.ndarray, ndim: int):
    ab = _bcast(s.alphas_cumprod, t, ndim)
    return jnp.sqrt(ab), jnp.sqrt(1.0 - ab)


def q_sample(s: Schedule, x0: jnp.ndarray, t: jnp.ndarray, eps: jnp.ndarray) -> jnp.ndarray:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps. x0, eps: [B, ...]; t: [B] int."""
    a, b = _coeffs(s, t, x0.ndim)
    return a * x0 + b * eps


def q_mean_variance(s: Schedule, x0: jnp.ndarray, t: jnp.ndarray):
    """Mean [B, ...] and variance [B, 1, ...] of q(x_t | x_0)."""
    a, b = _coeffs(s, t, x0.ndim)
    return a * x0, b**2


def alphas_cumprod_prev(s: Schedule) -> jnp.ndarray:
    """alpha_bar_{t-1} for every t, with alpha_bar_{-1} = 1. [T]."""
    return jnp.concatenate([jnp.ones((1,), s.alphas_cumprod.dtype), s.alphas_cumprod[:-1]])


def posterior_variance(s: Schedule) -> jnp.ndarray:
    """beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t (Eq. 7). [T]."""
    return (1.0 - alphas_cumprod_prev(s)) / (1.0 - s.alphas_cumprod) * s.betas


def q_posterior_mean_variance(s: Schedule, x0: jnp.ndarray, x_t: jnp.ndarray, t: jnp.ndarray):
    """Mean [B, ...] and variance [B, 1, ...] of q(x_{t-1} | x_t, x_0) (Eq. 6-7)."""
    nd = x0.ndim
    ab = _bcast(s.alphas_cumprod, t, nd)
    ab_prev = _bcast(alphas_cumprod_prev(s), t, nd)
    beta = _bcast(s.betas, t, nd)
    coef_x0 = jnp.sqrt(ab_prev) * beta / (1.0 - ab)
    coef_xt = jnp.sqrt(1.0 - beta) * (1.0 - ab_prev) / (1.0 - ab)
    return coef_x0 * x0 + coef_xt * x_t, _bcast(posterior_variance(s), t, nd)


def predict_x0_from_eps(s: Schedule, x_t, t, eps):
    """x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    a, b = _coeffs(s, t, x_t.ndim)
    return (x_t - b * eps) / a


def predict_eps_from_x0(s: Schedule, x_t, t, x0):
    """eps = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t)."""
    a, b = _coeffs(s, t, x_t.ndim)
    return (x_t - a * x0) / b


def v_from_x0_eps(s: Schedule, x0, t, eps):
    """v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0."""
    a, b = _coeffs(s, t, x0.ndim)
    return a * eps - b * x0


def predict_x0_from_v(s: Schedule, x_t, t, v):
    """x0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v."""
    a, b = _coeffs(s, t, x_t.ndim)
    return a * x_t - b * v


def predict_eps_from_v(s: Schedule, x_t, t, v):
    """eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v."""
    a, b = _coeffs(s, t, x_t.ndim)
    return b * x_t + a * v


def eps_from_prediction(s: Schedule, prediction: str, x_t, t, out):
    """Converts a network output of kind `prediction` into eps, for the samplers."""
    if prediction == "eps":
        return out
    if prediction == "x0":
        return predict_eps_from_x0(s, x_t, t, out)
    if prediction == "v":
        return predict_eps_from_v(s, x_t, t, out)
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")


def target(s: Schedule, prediction: str, x0, t, eps):
    """The regression target for a network predicting `prediction`."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return v_from_x0_eps(s, x0, t, eps)
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")


def simple_loss(s: Schedule, model_fn, x0, key, prediction: str = "eps") -> jnp.ndarray:
    """L_simple = E_{t, eps} ||target - model(x_t, t)||^2 (Ho et al. 2020, Eq. 14), mean over all.

    Args:
      model_fn: (x_t [B, H, W, C], t [B] int32) -> [B, H, W, C].
      x0: [B, H, W, C] float32 in [-1, 1].
    """
    t_key, eps_key = jax.random.split(key)
    t = jax.random.randint(t_key, (x0.shape[0],), 0, s.num_timesteps)
    eps = jax.random.normal(eps_key, x0.shape, x0.dtype)
    x_t = q_sample(s, x0, t, eps)
    return jnp.mean((model_fn(x_t, t) - target(s, prediction, x0, t, eps)) ** 2)
