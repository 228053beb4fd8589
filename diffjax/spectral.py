"""The linear degradations in their singular bases, A = U diag(sv) V^T with V a fast orthogonal transform.

mask (inpainting, detected impulses): V = I, sv = the mask. Block-average downsampling by f: V = the f x f
block DCT-II, sv = 1/f at each block's DC term and 0 elsewhere (U^T y = y, one value per block). The
reflect-boundary Gaussian blur: V = U = the DCT-II, sv = its eigenvalues. An observation y is kept as
y_hat = U^T y / sv (0 where sv = 0), so that A^T y = V (sv^2 y_hat) and everything below is elementwise
in V's coordinates. Used by DDNM+ (`restore`) and by TV deconvolution / super-resolution (`classical`).
"""

import functools
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from diffjax import degrade, heat

MASKED = ("inpaint_box", "inpaint_random", "salt_pepper")


class Decomposition(NamedTuple):
    """y_hat = U^T y / sv in V's coordinates, the singular values sv (both the clean image's shape), the basis."""

    y_hat: jnp.ndarray
    sv: jnp.ndarray
    basis: str        # "pixel", "dct", or "block<f>"


def blur_eigenvalues(std: float, h: int, w: int) -> jnp.ndarray:
    """The reflect-boundary blur with taps k_j (j = -r..r) is diagonal in the DCT-II basis with eigenvalue
    lam(k) lam(l), lam(k) = k_0 + 2 sum_{j>=1} k_j cos(pi k j / N) (exact for r < N). [H, W]."""
    taps = degrade.gaussian_kernel(std).astype(np.float64)
    r = (len(taps) - 1) // 2

    def lam(n):
        return taps[r] + 2 * sum(taps[r + j] * np.cos(np.pi * np.arange(n) * j / n) for j in range(1, r + 1))

    return jnp.asarray(np.outer(lam(h), lam(w)), jnp.float32)


def transforms(basis: str):
    """(V^T, V) of a basis: identity ("pixel"), the DCT-II ("dct"), or an f x f block DCT ("block<f>")."""
    if basis == "pixel":
        return (lambda x: x), (lambda c: c)
    if basis == "dct":
        return heat.dct, heat.idct
    f = int(basis[5:])
    return functools.partial(heat.dct, block=f), functools.partial(heat.idct, block=f)


def decompose(kind: str, level, y, shape, mask=None) -> Decomposition:
    """The observation y = A x (+ noise) of degradation `kind` at `level` in A's singular basis.

    kind "identity" is A = I; masked kinds need `mask` (1 = observed). `shape`: the clean [B, H, W, C]."""
    _, h, w, _ = shape
    if kind == "identity":
        return Decomposition(jnp.broadcast_to(y, shape), jnp.ones(shape, y.dtype), "pixel")
    if kind in MASKED:
        m = jnp.broadcast_to(mask, shape).astype(y.dtype)
        return Decomposition(m * y, m, "pixel")
    if kind == "blur":
        sv = blur_eigenvalues(float(level), h, w)[None, :, :, None]
        sv = jnp.where(jnp.abs(sv) > 1e-3, sv, 0.0)
        y_hat = jnp.where(sv != 0, heat.dct(y) / jnp.where(sv != 0, sv, 1.0), 0.0)
        return Decomposition(y_hat, jnp.broadcast_to(sv, shape), "dct")
    if kind == "downsample":
        f = int(level)
        dc = jnp.tile(jnp.zeros((f, f)).at[0, 0].set(1.0), (h // f, w // f))[None, :, :, None]
        up = jnp.repeat(jnp.repeat(y, f, 1), f, 2)                 # y per block, on every pixel
        return Decomposition(f * up * dc, jnp.broadcast_to(dc / f, shape), "block" + str(f))   # y / sv at DC
    raise ValueError(f"no singular basis for degradation {kind!r}")


def data_prox(dec: Decomposition, u, tau):
    """prox of tau/2 ||A x - y||^2 at u: (I + tau A^T A)^{-1} (u + tau A^T y) = V [(V^T u + tau sv^2 y_hat) /
    (1 + tau sv^2)]."""
    to, back = transforms(dec.basis)
    s2 = dec.sv**2
    return back((to(u) + tau * s2 * dec.y_hat) / (1.0 + tau * s2))
