"""Degradations shared by the classical and the diffusion restorers.

Images are float32 NHWC in [0, 1]. Every degradation is jittable, batched and seeded by an
explicit key, and returns an `Observation`: the degraded y plus what a restorer may know (the
linear operator A with y = A x + n, and the inpainting mask). Linear operators expose A and
its adjoint A^T (by `jax.linear_transpose`, exact for any boundary handling).
"""

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class LinearOperator:
    """y = A x for x: [B, H, W, C]; `in_shape` maps y's shape back to x's."""

    apply: Callable
    in_shape: Callable = lambda shape: shape

    def __call__(self, x):
        return self.apply(x)

    def adjoint(self, y):
        """A^T y, the unique map with <A x, y> = <x, A^T y>."""
        spec = jax.ShapeDtypeStruct(self.in_shape(y.shape), y.dtype)
        return jax.linear_transpose(self.apply, spec)(y)[0]


class Observation(NamedTuple):
    """y: degraded images; operator: A (None = identity); mask: 1 where a pixel is observed (or None);
    kind, level: which degradation made y (restorers that need a PSF or a factor read them)."""

    y: jnp.ndarray
    operator: LinearOperator | None = None
    mask: jnp.ndarray | None = None
    kind: str = ""
    level: float = 0.0


def check_images(x) -> None:
    """Raises ValueError unless x is a float [B, H, W, C] array (C = 1 or 3) with values in [0, 1]."""
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [B, H, W, C] with C = 1 or 3, got shape {tuple(x.shape)}")
    lo, hi = float(jnp.min(x)), float(jnp.max(x))
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"images must have values in [0, 1], got [{lo:.3g}, {hi:.3g}]; divide uint8 by 255")


# --- noise models -----------------------------------------------------------------------------------------

def gaussian_noise(key, x, sigma: float):
    """y = x + sigma n, n ~ N(0, I)."""
    return x + sigma * jax.random.normal(key, x.shape, x.dtype)


def poisson_noise(key, x, peak: float):
    """y = Poisson(peak x) / peak: mean x, variance x / peak."""
    return jax.random.poisson(key, peak * x, x.shape).astype(x.dtype) / peak


def salt_and_pepper(key, x, p: float):
    """A fraction p of the pixels (per channel) set to 0 or 1 with equal probability."""
    hit_key, salt_key = jax.random.split(key)
    hit = jax.random.bernoulli(hit_key, p, x.shape)
    salt = jax.random.bernoulli(salt_key, 0.5, x.shape).astype(x.dtype)
    return jnp.where(hit, salt, x)


# --- linear operators ------------------------------------------------------------------------------------

def gaussian_kernel(std: float, radius: int | None = None) -> np.ndarray:
    """Normalised 1-D Gaussian taps exp(-k^2 / (2 std^2)), k = -r..r, r = ceil(4 std) by default. A NumPy
    constant, so that operators built from it (and cached) under a `jax.jit` trace hold no tracer."""
    r = int(math.ceil(4 * std)) if radius is None else radius
    k = np.exp(-np.arange(-r, r + 1, dtype=np.float64) ** 2 / (2 * float(std) ** 2))
    return (k / k.sum()).astype(np.float32)


def blur_operator(std: float) -> LinearOperator:
    """Separable Gaussian blur with reflecting boundary (scipy's 'reflect' = numpy's 'symmetric')."""
    k = gaussian_kernel(std)
    r = (k.shape[0] - 1) // 2

    def apply(x):
        b, h, w, c = x.shape
        if r >= min(h, w):
            raise ValueError(f"blur std {std} is too large for {h}x{w} images")
        x = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="symmetric")
        x = x.transpose(0, 3, 1, 2).reshape(b * c, 1, h + 2 * r, w + 2 * r)
        x = jax.lax.conv(x, k.reshape(1, 1, -1, 1), (1, 1), "VALID")
        x = jax.lax.conv(x, k.reshape(1, 1, 1, -1), (1, 1), "VALID")
        return x.reshape(b, c, h, w).transpose(0, 2, 3, 1)

    return LinearOperator(apply)


def mask_operator(mask) -> LinearOperator:
    """A x = mask * x (self-adjoint); mask is 1 where observed, broadcastable to x."""
    return LinearOperator(lambda x: x * mask)


def downsample_operator(factor: int) -> LinearOperator:
    """Block averaging over factor x factor blocks: [B, H, W, C] -> [B, H/f, W/f, C]."""

    def apply(x):
        b, h, w, c = x.shape
        if h % factor or w % factor:
            raise ValueError(f"image size {h}x{w} is not divisible by the downsampling factor {factor}")
        return x.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))

    return LinearOperator(apply, lambda s: (s[0], s[1] * factor, s[2] * factor, s[3]))


def box_mask(shape, size: int) -> jnp.ndarray:
    """[1, H, W, 1] mask that hides a centered size x size box (0 inside, 1 outside)."""
    _, h, w, _ = shape
    top, left = (h - size) // 2, (w - size) // 2
    m = jnp.ones((1, h, w, 1), jnp.float32)
    return m.at[:, top:top + size, left:left + size].set(0.0)


def random_mask(key, shape, missing: float) -> jnp.ndarray:
    """[B, H, W, 1] mask hiding each pixel (all channels) with probability `missing`."""
    b, h, w, _ = shape
    return (~jax.random.bernoulli(key, missing, (b, h, w, 1))).astype(jnp.float32)


# --- the degradations the experiments use ------------------------------------------------------------------

def _noise(fn):
    return lambda key, x, level: Observation(fn(key, x, level))


BLUR_NOISE_SIGMA = 0.01  # the Gaussian noise added after every blur


def _blur(key, x, std):
    op = blur_operator(std)
    return Observation(gaussian_noise(key, op(x), BLUR_NOISE_SIGMA), op)


def _inpaint_box(key, x, size):
    mask = box_mask(x.shape, int(size)) * jnp.ones((x.shape[0], 1, 1, 1))
    return Observation(x * mask, mask_operator(mask), mask)


def _inpaint_random(key, x, missing):
    mask = random_mask(key, x.shape, missing)
    return Observation(x * mask, mask_operator(mask), mask)


def _downsample(key, x, factor):
    op = downsample_operator(int(factor))
    return Observation(op(x), op)


DEGRADATIONS: dict[str, Callable] = {
    "gaussian": _noise(gaussian_noise),
    "poisson": _noise(poisson_noise),
    "salt_pepper": _noise(salt_and_pepper),
    "blur": _blur,
    "inpaint_box": _inpaint_box,
    "inpaint_random": _inpaint_random,
    "downsample": _downsample,
}

DEFAULT_LEVELS = {
    "gaussian": (0.1, 0.2, 0.3, 0.5),       # noise std
    "poisson": (30, 10, 3),                 # peak photon count
    "salt_pepper": (0.1, 0.2, 0.4),         # fraction of pixels hit
    "blur": (1.0, 2.0),                     # kernel std, plus Gaussian noise 0.01
    "inpaint_box": (12,),                   # side of the centered missing box
    "inpaint_random": (0.5, 0.8),           # fraction of pixels missing
    "downsample": (2, 4),                   # super-resolution factor
}


def operator(kind: str, level) -> LinearOperator:
    """The fixed linear operator A of a degradation that has one without a random mask (blur, downsample)."""
    if kind == "blur":
        return blur_operator(float(level))
    if kind == "downsample":
        return downsample_operator(int(level))
    raise ValueError(f"no fixed linear operator for {kind!r}; only blur and downsample have one")


def degrade(kind: str, level, key, x) -> Observation:
    """Applies degradation `kind` at `level` to clean images x ([B, H, W, C] in [0, 1])."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {sorted(DEGRADATIONS)}")
    return DEGRADATIONS[kind](key, x, level)._replace(kind=kind, level=level)
