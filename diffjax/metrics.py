"""Image quality metrics in JAX, batched over NHWC images with values in [0, data_range]; the Fréchet
distance of feature statistics (numpy, float64)."""

import jax
import jax.numpy as jnp
import numpy as np


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


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of [N, D] features, in float64. -> ([D], [D, D])."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need [N >= 2, D] features for a covariance, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Fréchet (2-Wasserstein^2) distance of N(mu1, cov1) and N(mu2, cov2) (Dowson & Landau 1982; FID,
    Heusel et al. 2017): ||mu1 - mu2||^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2)).

    tr((C1 C2)^(1/2)) = tr((S C2 S)^(1/2)) with S = C1^(1/2): the square roots of the eigenvalues of a
    symmetric PSD matrix, in float64 (no complex round-off as with a general matrix square root).
    """
    w1, v1 = np.linalg.eigh(np.asarray(cov1, np.float64))
    sqrt1 = (v1 * np.sqrt(np.clip(w1, 0, None))) @ v1.T
    middle = sqrt1 @ np.asarray(cov2, np.float64) @ sqrt1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt)
