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


def alphas_cumprod_prev(s: Schedule) -> jnp.ndarray:
    """alpha_bar_{t-1} for every t, with alpha_bar_{-1} = 1. [T]."""
    return jnp.concatenate([jnp.ones((1,), s.alphas_cumprod.dtype), s.alphas_cumprod[:-1]])


def posterior_variance(s: Schedule) -> jnp.ndarray:
    """beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t (Eq. 7). [T]."""
    return (1.0 - alphas_cumprod_prev(s)) / (1.0 - s.alphas_cumprod) * s.betas


def posterior(alpha_ts, sigma2_ts, alpha_s, sigma2_s, x0, x_t):
    """q(x_s | x_t, x_0) of the Markov chain x_s = alpha_s x0 + sigma_s eps, x_t = alpha_ts x_s + sigma_ts eps',
    elementwise (the coefficients broadcast, e.g. one per DCT frequency in blurring diffusion):
      sigma_t^2 = sigma2_ts + alpha_ts^2 sigma2_s,
      mean = (alpha_s sigma2_ts x0 + alpha_ts sigma2_s x_t) / sigma_t^2,  var = sigma2_ts sigma2_s / sigma_t^2
    (Ho et al. 2020, Eq. 7, where alpha_ts^2 = 1 - beta_t; Hoogeboom & Salimans 2023 per frequency).
    Every term is a sum of non-negative parts: no cancellation at small t. Returns (mean, var)."""
    sigma2_t = sigma2_ts + alpha_ts**2 * sigma2_s
    return (alpha_s * sigma2_ts * x0 + alpha_ts * sigma2_s * x_t) / sigma2_t, sigma2_ts * sigma2_s / sigma2_t


def q_posterior_mean_variance(s: Schedule, x0: jnp.ndarray, x_t: jnp.ndarray, t: jnp.ndarray):
    """Mean [B, ...] and variance [B, 1, ...] of q(x_{t-1} | x_t, x_0) (Eq. 6-7)."""
    nd = x0.ndim
    ab_prev = _bcast(alphas_cumprod_prev(s), t, nd)
    beta = _bcast(s.betas, t, nd)
    return posterior(jnp.sqrt(1.0 - beta), beta, jnp.sqrt(ab_prev), 1.0 - ab_prev, x0, x_t)


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


def min_snr_weight(s: Schedule, prediction: str, t, gamma: float) -> jnp.ndarray:
    """Min-SNR-gamma loss weight (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting
    Strategy", Eq. 8 and Sec. 3.4): the x0-space weight min(SNR_t, gamma), SNR_t = alpha_bar_t / (1 - alpha_bar_t),
    expressed for the regression target: / SNR_t for eps, / (SNR_t + 1) for v, as is for x0."""
    ab = s.alphas_cumprod[t]
    snr = ab / (1.0 - ab)
    clipped = jnp.minimum(snr, gamma)
    return {"eps": clipped / snr, "v": clipped / (snr + 1.0), "x0": clipped}[prediction]


def simple_loss(s: Schedule, model_fn, x0, key, prediction: str = "eps", min_snr_gamma: float = 0.0) -> jnp.ndarray:
    """L_simple = E_{t, eps} w_t ||target - model(x_t, t)||^2 (Ho et al. 2020, Eq. 14: w_t = 1), mean over all;
    with min_snr_gamma > 0, w_t = `min_snr_weight`.

    Args:
      model_fn: (x_t [B, H, W, C], t [B] int32) -> [B, H, W, C].
      x0: [B, H, W, C] float32 in [-1, 1].
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")
    t_key, eps_key = jax.random.split(key)
    t = jax.random.randint(t_key, (x0.shape[0],), 0, s.num_timesteps)
    eps = jax.random.normal(eps_key, x0.shape, x0.dtype)
    x_t = q_sample(s, x0, t, eps)
    err2 = (model_fn(x_t, t) - target(s, prediction, x0, t, eps)) ** 2
    if min_snr_gamma == 0:
        return jnp.mean(err2)
    return jnp.mean(min_snr_weight(s, prediction, t, min_snr_gamma) * jnp.mean(err2, axis=tuple(range(1, x0.ndim))))
