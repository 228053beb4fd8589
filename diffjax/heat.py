"""The heat equation u_t = Laplace(u) as an operator: exp(t Laplace), exactly, in the DCT-II basis.

With Neumann (reflecting) boundary the Laplacian is diagonal in the DCT-II basis, with eigenvalue
-pi^2 (k^2 / H^2 + l^2 / W^2) for frequency (k, l), so
  exp(t Laplace) x = IDCT(exp(-pi^2 (k^2/H^2 + l^2/W^2) t) DCT(x)),
which equals a Gaussian filter of std sqrt(2 t) with reflecting boundary (Koenderink 1984;
Rissanen et al. 2023, "Generative Modelling With Inverse Heat Dissipation", Sec. 2).
"""

import jax
import jax.numpy as jnp


def frequencies_squared(h: int, w: int) -> jnp.ndarray:
    """pi^2 (k^2 / H^2 + l^2 / W^2), minus the Laplacian's eigenvalues. [H, W]."""
    return (jnp.pi * jnp.arange(h) / h)[:, None] ** 2 + (jnp.pi * jnp.arange(w) / w)[None, :] ** 2


def dct(x):
    """Orthonormal 2-D DCT-II over the spatial axes of [B, H, W, C]."""
    return jax.scipy.fft.dctn(x, type=2, axes=(1, 2), norm="ortho")


def idct(c):
    """Inverse of `dct`."""
    return jax.scipy.fft.idctn(c, type=2, axes=(1, 2), norm="ortho")


@jax.jit
def heat(x, t):
    """exp(t Laplace) x: solves u_t = Laplace(u), u(0) = x for time t >= 0 (Neumann). x: [B, H, W, C];
    t: a scalar or [B] (per image)."""
    _, h, w, _ = x.shape
    t = jnp.reshape(jnp.asarray(t, x.dtype), (-1, 1, 1, 1))
    return idct(dct(x) * jnp.exp(-frequencies_squared(h, w)[None, :, :, None] * t))
