"""The heat equation u_t = Laplace(u) as an operator: exp(t Laplace), exactly, in the DCT-II basis.

With Neumann (reflecting) boundary the Laplacian is diagonal in the DCT-II basis, with eigenvalue
-pi^2 (k^2 / H^2 + l^2 / W^2) for frequency (k, l), so
  exp(t Laplace) x = IDCT(exp(-pi^2 (k^2/H^2 + l^2/W^2) t) DCT(x)),
which equals a Gaussian filter of std sqrt(2 t) with reflecting boundary (Koenderink 1984;
Rissanen et al. 2023, "Generative Modelling With Inverse Heat Dissipation", Sec. 2).

On it, two forward processes: inverse heat dissipation (IHDM) and blurring diffusion. Their samplers
are in `samplers.py`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffjax.schedules import Schedule


def frequencies_squared(h: int, w: int) -> jnp.ndarray:
    """pi^2 (k^2 / H^2 + l^2 / W^2), minus the Laplacian's eigenvalues. [H, W]."""
    return (jnp.pi * jnp.arange(h) / h)[:, None] ** 2 + (jnp.pi * jnp.arange(w) / w)[None, :] ** 2


def dct_matrix(n: int, block: int | None = None) -> np.ndarray:
    """The orthonormal DCT-II matrix D of size n, D[k, j] = sqrt((2 - [k = 0]) / n) cos(pi (2j + 1) k / (2n)), so
    D v = DCT-II(v); with `block` = f, the block-diagonal matrix of n / f such f x f matrices (an f x f tile DCT).
    [n, n] float32."""
    f = block or n
    if n % f:
        raise ValueError(f"a block DCT of size {f} does not tile {n} pixels")
    k, j = np.meshgrid(np.arange(f), np.arange(f), indexing="ij")
    d = np.sqrt((2.0 - (k == 0)) / f) * np.cos(np.pi * (2 * j + 1) * k / (2 * f))
    return np.kron(np.eye(n // f), d).astype(np.float32)


def dct(x, block: int | None = None):
    """Orthonormal 2-D DCT-II over the spatial axes of [B, H, W, C] (of each block x block tile with `block`):
    D_H x D_W^T, two small matmuls (3-5x faster on CPU than the FFT route of jax.scipy.fft.dctn at 28 x 28)."""
    return jnp.einsum("ih,bhwc,jw->bijc", dct_matrix(x.shape[1], block), x, dct_matrix(x.shape[2], block))


def idct(c, block: int | None = None):
    """Inverse of `dct`: D_H^T c D_W (D is orthogonal)."""
    return jnp.einsum("ih,bijc,jw->bhwc", dct_matrix(c.shape[1], block), c, dct_matrix(c.shape[2], block))


@jax.jit
def heat(x, t):
    """exp(t Laplace) x: solves u_t = Laplace(u), u(0) = x for time t >= 0 (Neumann). x: [B, H, W, C];
    t: a scalar or [B] (per image)."""
    _, h, w, _ = x.shape
    t = jnp.reshape(jnp.asarray(t, x.dtype), (-1, 1, 1, 1))
    return idct(dct(x) * jnp.exp(-frequencies_squared(h, w)[None, :, :, None] * t))


# --- Inverse heat dissipation (Rissanen, Heinonen & Solin 2023, "Generative Modelling With Inverse Heat
# Dissipation", ICLR) --------------------------------------------------------------------------------------

class IHDM(NamedTuple):
    """The levels of the inverse heat dissipation model; a pytree, so it can be passed into `jax.jit`.

    Attributes:
      times: float32 [K + 1], t_k = sigma_k^2 / 2 with sigma_0 = 0 and sigma_1..K log-spaced.
      train_noise: the std sigma of the noise added to the blurred training input (model units, [-1, 1]).
    """

    times: jnp.ndarray
    train_noise: jnp.ndarray

    @property
    def num_timesteps(self) -> int:
        """K + 1: the levels 0..K (the network is asked about 1..K)."""
        return self.times.shape[0]


def ihdm(num_levels: int, sigma_min: float, sigma_max: float, train_noise: float) -> IHDM:
    """K = `num_levels` blur levels: sigma_k = exp(linspace(log sigma_min, log sigma_max, K))_k, plus k = 0
    (no blur); t_k = sigma_k^2 / 2 (Rissanen et al. 2023, Sec. 4 and their code's blur schedule)."""
    if not (num_levels >= 1 and 0 < sigma_min <= sigma_max):
        raise ValueError(f"IHDM needs num_levels >= 1 and 0 < sigma_min <= sigma_max, got {num_levels}, "
                         f"{sigma_min}, {sigma_max}")
    sigmas = np.concatenate([[0.0], np.exp(np.linspace(np.log(sigma_min), np.log(sigma_max), num_levels))])
    return IHDM(jnp.asarray(sigmas**2 / 2, jnp.float32), jnp.float32(train_noise))


def ihdm_loss(p: IHDM, model_fn, x0, key) -> jnp.ndarray:
    """E_{k, eps} ||u_{k-1} - (u~_k + f(u~_k, k))||^2 / D with u_k = heat(x0, t_k), u~_k = u_k + sigma eps,
    k ~ U{1..K} (Rissanen et al. 2023, Eq. 8: the network output is a residual). x0: [B, H, W, C]."""
    k_key, eps_key = jax.random.split(key)
    k = jax.random.randint(k_key, (x0.shape[0],), 1, p.num_timesteps)
    noisy = heat(x0, p.times[k]) + p.train_noise * jax.random.normal(eps_key, x0.shape, x0.dtype)
    return jnp.mean((heat(x0, p.times[k - 1]) - (noisy + model_fn(noisy, k))) ** 2)


def prior_frequencies(p: IHDM, h: int, w: int, tol: float = 1e-6) -> tuple[int, int]:
    """(m, n): the DCT box [0:m, 0:n] outside which heat(., t_K) attenuates every frequency below `tol`."""
    keep = np.asarray(jnp.exp(-frequencies_squared(h, w) * p.times[-1])) >= tol
    return int(np.flatnonzero(keep.any(1)).max()) + 1, int(np.flatnonzero(keep.any(0)).max()) + 1


def ihdm_prior(p: IHDM, x0) -> jnp.ndarray:
    """The prior's data: the DCT coefficients of the maximally blurred images heat(x0, t_K) that survive
    the blur (`prior_frequencies`), [N, m, n, C]. A draw from the prior is one of them, back in pixels,
    plus the sampling noise."""
    m, n = prior_frequencies(p, x0.shape[1], x0.shape[2])
    return dct(heat(x0, p.times[-1]))[:, :m, :n]


def ihdm_prior_images(coefficients, shape) -> jnp.ndarray:
    """Pixels [B, H, W, C] from prior coefficients [B, m, n, C] (the others zero)."""
    _, m, n, _ = coefficients.shape
    return idct(jnp.pad(coefficients, ((0, 0), (0, shape[1] - m), (0, shape[2] - n), (0, 0))))


# --- Blurring diffusion (Hoogeboom & Salimans 2023, "Blurring Diffusion Models", ICLR) ------------------------

class Blurring(NamedTuple):
    """A Gaussian diffusion that also dissipates heat, diagonal in the DCT basis; a pytree.

    In DCT coefficients u = DCT(x): q(u_t | u_0) = N(alpha_t u_0, sigma_t^2 I) with, per frequency,
      alpha_t = a_t d_t,  d_t = (1 - m) exp(-lambda tau_t) + m,  sigma_t = sqrt(1 - a_t^2),
    a_t^2 = alpha_bar_t of the noise `schedule`, lambda = `frequencies_squared`, tau_t the dissipation time
    and m = `min_scale` (Hoogeboom & Salimans 2023, Sec. 3-4). With tau = 0 it is DDPM.

    Attributes:
      schedule: the noise schedule (`schedules.Schedule`) giving a_t.
      tau: float32 [T], the dissipation time of each timestep.
      min_scale: the smallest d_t, keeping alpha_t invertible.
    """

    schedule: Schedule
    tau: jnp.ndarray
    min_scale: jnp.ndarray

    @property
    def num_timesteps(self) -> int:
        return self.tau.shape[0]


def blurring(schedule: Schedule, sigma_blur_max: float, min_scale: float = 0.001) -> Blurring:
    """tau_t = sigma_B(t)^2 / 2 with sigma_B(t) = sigma_blur_max sin^2(pi t / 2), t = (i + 1) / T for
    timestep i (Hoogeboom & Salimans 2023, Sec. 4.1)."""
    if not (sigma_blur_max >= 0 and 0 < min_scale <= 1):
        raise ValueError(f"blurring diffusion needs sigma_blur_max >= 0 and min_scale in (0, 1], got "
                         f"{sigma_blur_max}, {min_scale}")
    t = np.arange(1, schedule.num_timesteps + 1) / schedule.num_timesteps
    tau = (sigma_blur_max * np.sin(np.pi * t / 2) ** 2) ** 2 / 2
    return Blurring(schedule, jnp.asarray(tau, jnp.float32), jnp.float32(min_scale))


def blurring_alpha_sigma(p: Blurring, t, h: int, w: int):
    """(alpha_t [B, H, W, 1] per frequency, sigma_t^2 [B, 1, 1, 1]) for integer timesteps t [B] in [-1, T);
    t = -1 is the data itself (alpha = 1, sigma = 0)."""
    t = jnp.asarray(t)
    valid = (t >= 0)[:, None, None, None]
    tc = jnp.maximum(t, 0)
    ab = jnp.where(valid, p.schedule.alphas_cumprod[tc][:, None, None, None], 1.0)
    lam = frequencies_squared(h, w)[None, :, :, None]
    d = (1.0 - p.min_scale) * jnp.exp(-lam * p.tau[tc][:, None, None, None]) + p.min_scale
    return jnp.sqrt(ab) * jnp.where(valid, d, 1.0), 1.0 - ab


def blurring_q_sample(p: Blurring, x0, t, eps):
    """x_t = IDCT(alpha_t DCT(x0)) + sigma_t eps. x0, eps: [B, H, W, C]; t: [B] int."""
    alpha, sigma2 = blurring_alpha_sigma(p, t, x0.shape[1], x0.shape[2])
    return idct(alpha * dct(x0)) + jnp.sqrt(sigma2) * eps


def blurring_loss(p: Blurring, model_fn, x0, key) -> jnp.ndarray:
    """E_{t, eps} ||eps - eps_theta(x_t, t)||^2 (Hoogeboom & Salimans 2023, Sec. 4), mean over all."""
    t_key, eps_key = jax.random.split(key)
    t = jax.random.randint(t_key, (x0.shape[0],), 0, p.num_timesteps)
    eps = jax.random.normal(eps_key, x0.shape, x0.dtype)
    return jnp.mean((model_fn(blurring_q_sample(p, x0, t, eps), t) - eps) ** 2)
