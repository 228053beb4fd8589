"""Classical restorers behind one interface, so experiments loop over a registry.

In JAX (jitted, differentiable in their parameters): the heat equation, Perona-Malik
anisotropic diffusion and harmonic inpainting. Through the libraries made for them:
median, TV (Chambolle), bilateral, NL-means, BM3D, Wiener, Richardson-Lucy, biharmonic
inpainting and bilinear/bicubic resizing. Images are float32 NHWC in [0, 1].
"""

import itertools
from dataclasses import dataclass
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from diffjax import degrade
from diffjax.degrade import Observation

NOISE = ("gaussian", "poisson", "salt_pepper")
INPAINT = ("inpaint_box", "inpaint_random")


# --- JAX restorers -------------------------------------------------------------------------------------------

@jax.jit
def heat(x, t):
    """Solves u_t = Laplace(u), u(0) = x, for time t with Neumann boundary, exactly in the DCT-II basis:
    u(t) = IDCT(exp(-(pi^2 (k^2/H^2 + l^2/W^2)) t) DCT(x)). Equals a Gaussian filter of sigma = sqrt(2 t)
    with reflecting boundary (Koenderink 1984). x: [B, H, W, C]."""
    _, h, w, _ = x.shape
    freq = (jnp.pi * jnp.arange(h) / h)[:, None] ** 2 + (jnp.pi * jnp.arange(w) / w)[None, :] ** 2
    coeffs = jax.scipy.fft.dctn(x, type=2, axes=(1, 2), norm="ortho")
    return jax.scipy.fft.idctn(coeffs * jnp.exp(-freq * t)[None, :, :, None], type=2, axes=(1, 2), norm="ortho")


DIFFUSIVITIES = {
    "exponential": lambda d2, kappa: jnp.exp(-d2 / kappa**2),       # Perona & Malik 1990, Eq. 10
    "rational": lambda d2, kappa: 1.0 / (1.0 + d2 / kappa**2),      # Perona & Malik 1990, Eq. 11
}


def _flux_divergence(u, kappa, g):
    """sum over the 4 neighbours of g(|d|^2) d, as differences of fluxes across pixel edges (zero flux
    across the image border = Neumann boundary), so the mean intensity is conserved exactly."""
    out = jnp.zeros_like(u)
    for axis in (1, 2):
        d = jnp.diff(u, axis=axis)
        flux = g(d * d, kappa) * d
        pad_lo = [(0, 0)] * 4
        pad_hi = [(0, 0)] * 4
        pad_lo[axis], pad_hi[axis] = (1, 0), (0, 1)
        out = out + jnp.pad(flux, pad_hi) - jnp.pad(flux, pad_lo)
    return out


@partial(jax.jit, static_argnames=("steps", "diffusivity"))
def perona_malik(x, kappa, steps: int = 20, dt: float = 0.2, diffusivity: str = "exponential"):
    """Perona-Malik anisotropic diffusion u_t = div(g(|grad u|) grad u) (Perona & Malik 1990),
    explicit 4-neighbour scheme u <- u + dt sum_n g(|d_n|^2) d_n, stable for dt <= 0.25.
    x: [B, H, W, C]; kappa: contrast parameter (edges with |grad u| >> kappa are kept)."""
    g = DIFFUSIVITIES[diffusivity]
    return jax.lax.fori_loop(0, steps, lambda _, u: u + dt * _flux_divergence(u, kappa, g), x)


@partial(jax.jit, static_argnames=("iterations",))
def harmonic_inpaint(y, mask, iterations: int = 400):
    """Fills the pixels where mask == 0 with the solution of Laplace(u) = 0 that agrees with y where
    mask == 1 (the steady state of the heat equation), by Jacobi iteration from the mean of y."""
    fill = jnp.sum(y * mask, axis=(1, 2, 3), keepdims=True) / jnp.maximum(jnp.sum(mask, (1, 2, 3), keepdims=True), 1)
    u = jnp.where(mask > 0, y, fill)

    def step(_, u):
        p = jnp.pad(u, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        avg = (p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]) / 4
        return jnp.where(mask > 0, y, avg)

    return jax.lax.fori_loop(0, iterations, step, u)


# --- library restorers, per image --------------------------------------------------------------------------

def _per_image(fn, y, masks=None, **kw):
    """Applies fn([H, W] or [H, W, 3] numpy image, [mask [H, W],] **kw) -> same shape to each image."""
    y = np.asarray(y, np.float64)
    masks = [{}] * len(y) if masks is None else [{"mask": m[..., 0]} for m in np.asarray(masks, np.float64)]
    out = [fn(img[..., 0] if img.shape[-1] == 1 else img, **m, **kw) for img, m in zip(y, masks)]
    return jnp.asarray(np.stack(out).reshape(y.shape), jnp.float32)


def _psf(std):
    k = np.asarray(degrade.gaussian_kernel(std))
    return np.outer(k, k)


def _median(img, size):
    import scipy.ndimage as ndi
    return ndi.median_filter(img, size=(size, size) + (1,) * (img.ndim - 2), mode="reflect")


def _tv(img, weight):
    from skimage.restoration import denoise_tv_chambolle
    return denoise_tv_chambolle(img, weight=weight, channel_axis=-1 if img.ndim == 3 else None)


def _bilateral(img, sigma_color, sigma_spatial):
    from skimage.restoration import denoise_bilateral
    return denoise_bilateral(np.clip(img, 0, 1), sigma_color=sigma_color, sigma_spatial=sigma_spatial,
                             channel_axis=-1 if img.ndim == 3 else None)


def _nl_means(img, h):
    from skimage.restoration import denoise_nl_means
    return denoise_nl_means(img, h=h, patch_size=5, patch_distance=6, fast_mode=True,
                            channel_axis=-1 if img.ndim == 3 else None)


def _bm3d(img, sigma):
    import bm3d
    return bm3d.bm3d(img, sigma_psd=sigma)


def _wiener(img, std, balance):
    from skimage.restoration import wiener
    return _per_channel(lambda c: wiener(c, _psf(std), balance, clip=False), img)


def _richardson_lucy(img, std, num_iter):
    from skimage.restoration import richardson_lucy
    return _per_channel(lambda c: richardson_lucy(np.clip(c, 1e-6, None), _psf(std), num_iter=num_iter,
                                                  clip=False), img)


def _per_channel(fn, img):
    return fn(img) if img.ndim == 2 else np.stack([fn(img[..., i]) for i in range(img.shape[-1])], -1)


def _biharmonic(img, mask):
    from skimage.restoration import inpaint_biharmonic
    return inpaint_biharmonic(img, 1 - mask, channel_axis=-1 if img.ndim == 3 else None)


def _resize(y, factor, order):
    from skimage.transform import resize
    b, h, w, c = y.shape
    out = [resize(np.asarray(img, np.float64), (h * factor, w * factor, c), order=order, mode="reflect",
                  anti_aliasing=False) for img in y]
    return jnp.asarray(np.stack(out), jnp.float32)


# --- the registry -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """A restorer: `restore(obs, **params) -> x_hat` [B, H, W, C], for the degradation kinds in
    `applies_to`, tuned over `grid` (a tuple of parameter dicts)."""

    name: str
    applies_to: tuple
    grid: tuple
    restore: Callable


def _grid(**axes):
    keys = list(axes)
    return tuple(dict(zip(keys, values)) for values in itertools.product(*axes.values()))


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("degraded", NOISE + ("blur",), ({},), lambda obs: obs.y),
    Method("heat", NOISE, _grid(t=(0.1, 0.25, 0.5, 1.0, 2.0)), lambda obs, t: heat(obs.y, t)),
    Method("perona_malik_exp", NOISE, _grid(kappa=(0.05, 0.1, 0.2, 0.4), steps=(5, 20)),
           lambda obs, kappa, steps: perona_malik(obs.y, kappa, steps, 0.2, "exponential")),
    Method("perona_malik_rational", NOISE, _grid(kappa=(0.05, 0.1, 0.2, 0.4), steps=(5, 20)),
           lambda obs, kappa, steps: perona_malik(obs.y, kappa, steps, 0.2, "rational")),
    Method("median", NOISE, _grid(size=(3, 5)), lambda obs, size: _per_image(_median, obs.y, size=size)),
    Method("tv_chambolle", NOISE + ("blur",), _grid(weight=(0.05, 0.1, 0.2, 0.4, 0.8)),
           lambda obs, weight: _per_image(_tv, obs.y, weight=weight)),
    Method("bilateral", NOISE, _grid(sigma_color=(0.1, 0.3), sigma_spatial=(1.0, 2.0)),
           lambda obs, **kw: _per_image(_bilateral, obs.y, **kw)),
    Method("nl_means", NOISE, _grid(h=(0.05, 0.1, 0.2, 0.4, 0.6)), lambda obs, h: _per_image(_nl_means, obs.y, h=h)),
    Method("bm3d", NOISE, _grid(sigma=(0.05, 0.1, 0.2, 0.3, 0.5)), lambda obs, sigma: _per_image(_bm3d, obs.y, sigma=sigma)),
    Method("wiener", ("blur",), _grid(balance=(0.003, 0.01, 0.03, 0.1)),
           lambda obs, balance: _per_image(_wiener, obs.y, std=obs.level, balance=balance)),
    Method("richardson_lucy", ("blur",), _grid(num_iter=(5, 10, 30)),
           lambda obs, num_iter: _per_image(_richardson_lucy, obs.y, std=obs.level, num_iter=num_iter)),
    Method("harmonic", INPAINT, ({},), lambda obs: harmonic_inpaint(obs.y, obs.mask)),
    Method("biharmonic", INPAINT, ({},), lambda obs: _per_image(_biharmonic, obs.y, masks=obs.mask)),
    Method("nearest", ("downsample",), ({},), lambda obs: _resize(obs.y, int(obs.level), 0)),
    Method("bilinear", ("downsample",), ({},), lambda obs: _resize(obs.y, int(obs.level), 1)),
    Method("bicubic", ("downsample",), ({},), lambda obs: _resize(obs.y, int(obs.level), 3)),
]}


def get(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name]


def restore(name: str, obs: Observation, **params):
    """Runs method `name` on an observation, clipping the result to [0, 1]."""
    method = get(name)
    if obs.kind not in method.applies_to:
        raise ValueError(f"method {name!r} does not apply to {obs.kind!r}; it restores {method.applies_to}")
    return jnp.clip(method.restore(obs, **params), 0.0, 1.0)
