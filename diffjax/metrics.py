"""Image quality metrics in JAX, batched over NHWC images with values in [0, data_range]."""

import jax
import jax.numpy as jnp


def psnr(x, ref, data_range: float = 1.0) -> jnp.ndarray:
    """PSNR = 10 log10(data_range^2 / MSE) per image. x, ref: [B, H, W, C] -> [B] (dB)."""
    mse = jnp.mean((x.astype(jnp.float32) - ref.astype(jnp.float32)) ** 2, axis=(1, 2, 3))
    return 10.0 * jnp.log10(data_range**2 / mse)


def _box_valid(x, size: int):
    """Mean over every size x size window that fits ('valid'), per channel. [B, H, W, C] -> [B, H-s+1, W-s+1, C]."""
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, size, size, 1), (1, 1, 1, 1), "VALID")
    return s / (size * size)


def ssim(x, ref, data_range: float = 1.0, win_size: int = 7, k1: float = 0.01, k2: float = 0.03) -> jnp.ndarray:
    """Mean SSIM per image (Wang et al. 2004, Eq. 13) with a uniform win_size window and sample covariances,
    averaged over the positions where the window fits and over channels: the defaults of
    `skimage.metrics.structural_similarity(..., data_range=1, channel_axis=-1)`. [B, H, W, C] -> [B].
    """
    x, ref = x.astype(jnp.float32), ref.astype(jnp.float32)
    n = win_size * win_size
    cov_norm = n / (n - 1)
    mx, my = _box_valid(x, win_size), _box_valid(ref, win_size)
    vx = cov_norm * (_box_valid(x * x, win_size) - mx * mx)
    vy = cov_norm * (_box_valid(ref * ref, win_size) - my * my)
    vxy = cov_norm * (_box_valid(x * ref, win_size) - mx * my)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return jnp.mean(s, axis=(1, 2, 3))


def edginess(x) -> jnp.ndarray:
    """sum over pixels of |x[i, j+1] - x[i, j]| + |x[i+1, j] - x[i, j]|. [B, H, W, C] -> [B]."""
    dx = jnp.abs(jnp.diff(x, axis=2)).sum(axis=(1, 2, 3))
    dy = jnp.abs(jnp.diff(x, axis=1)).sum(axis=(1, 2, 3))
    return dx + dy
