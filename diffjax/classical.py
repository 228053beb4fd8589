"""Classical restorers behind one interface, so experiments loop over a registry.

In JAX (jitted, differentiable in their parameters): the heat equation, Perona-Malik anisotropic
diffusion, harmonic inpainting, a bilateral filter, and total-variation restoration by a
primal-dual (Chambolle-Pock) iteration: TV deconvolution, TV super-resolution and TV-L1. Through
the libraries made for them: median, TV denoising (Chambolle), NL-means, BM3D (also behind the
Anscombe transform for Poisson noise), Wiener, Richardson-Lucy, biharmonic inpainting and
bilinear/bicubic resizing. Images are float32 NHWC in [0, 1].
"""

import importlib.util
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from diffjax import degrade, spectral
from diffjax.degrade import Observation
from diffjax.heat import heat
from diffjax.tuning import counts, scales

NOISE = ("gaussian", "poisson", "salt_pepper")
INPAINT = ("inpaint_box", "inpaint_random")


# --- JAX restorers -------------------------------------------------------------------------------------------

DIFFUSIVITIES = {
    "exponential": lambda d2, kappa: jnp.exp(-d2 / kappa**2),       # Perona & Malik 1990, Eq. 10
    "rational": lambda d2, kappa: 1.0 / (1.0 + d2 / kappa**2),      # Perona & Malik 1990, Eq. 11
}


def flux_divergence(u, coefficient):
    """div(c grad u) on the 4-neighbour grid: sum over the neighbours of c_e d_e, d_e the difference across edge e
    and c_e = coefficient(d, axis) its conductance ([B, H-1, W, C] for axis 1, [B, H, W-1, C] for axis 2). Built
    as differences of fluxes across pixel edges, with zero flux across the image border (Neumann boundary), so
    the mean intensity is conserved exactly."""
    out = jnp.zeros_like(u)
    for axis in (1, 2):
        d = jnp.diff(u, axis=axis)
        flux = coefficient(d, axis) * d
        pad_lo = [(0, 0)] * 4
        pad_hi = [(0, 0)] * 4
        pad_lo[axis], pad_hi[axis] = (1, 0), (0, 1)
        out = out + jnp.pad(flux, pad_hi) - jnp.pad(flux, pad_lo)
    return out


@partial(jax.jit, static_argnames=("steps", "diffusivity"))
def perona_malik(x, kappa, steps: int = 20, dt: float = 0.2, diffusivity: str = "exponential"):
    """Perona-Malik anisotropic diffusion u_t = div(g(|grad u|) grad u) (Perona & Malik 1990),
    explicit 4-neighbour scheme u <- u + dt sum_n g(|d_n|^2) d_n, stable for dt <= 0.25.
    x: [B, H, W, C]; kappa: contrast parameter (edges with |grad u| >> kappa are kept), a scalar or one per
    image ([B, 1, 1, 1]), as is dt."""
    g = DIFFUSIVITIES[diffusivity]
    return jax.lax.fori_loop(0, steps, lambda _, u: u + dt * flux_divergence(u, lambda d, axis: g(d * d, kappa)), x)


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


def gradient(u):
    """Forward differences with zero at the far border (Neumann): [B, H, W, C] -> [B, H, W, C, 2]."""
    dy = jnp.pad(jnp.diff(u, axis=1), ((0, 0), (0, 1), (0, 0), (0, 0)))
    dx = jnp.pad(jnp.diff(u, axis=2), ((0, 0), (0, 0), (0, 1), (0, 0)))
    return jnp.stack([dy, dx], axis=-1)


def gradient_adjoint(p):
    """grad^T p = -div p, exactly (by transposing `gradient`). [B, H, W, C, 2] -> [B, H, W, C]."""
    spec = jax.ShapeDtypeStruct(p.shape[:-1], p.dtype)
    return jax.linear_transpose(gradient, spec)(p)[0]


def total_variation(u):
    """Isotropic TV(u) = sum over pixels and channels of |grad u|_2. [B, H, W, C] -> [B]."""
    return _magnitude(gradient(u)).sum(axis=(1, 2, 3))


def _magnitude(p):
    """|p_ij|_2 of a field of 2-vectors [..., 2] -> [...], written out over the two components: XLA:CPU's
    reduction over a minor axis of size 2 is 40x slower (most of a TV step, in `_project`)."""
    return jnp.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2)


@partial(jax.jit, static_argnames=("kind", "level", "fidelity", "iterations"))
def tv_pdhg(y, lam, *, kind: str = "identity", level=0.0, fidelity: str = "l2", iterations: int = 300):
    """Total-variation restoration by the primal-dual algorithm of Chambolle & Pock (2011, Alg. 1, theta = 1).

    fidelity "l2": min_{0<=x<=1} 1/2 ||A x - y||^2 + lam TV(x) (TV deconvolution / super-resolution), A the
      exact operator of degradation `kind` at `level`. K = (grad, I) with duals p (projected onto |p| <= lam)
      and r (the box, prox of the conjugate of its indicator); the data term is the primal part G, whose prox
      (I + tau A^T A)^{-1} is exact and elementwise in A's singular basis (`spectral`). That lets the primal
      step be large: tau = 10 c, sigma = c / 10 with c = 0.99 / ||K||, ||K||^2 <= 9, which converges in a few
      hundred iterations where tau = sigma needs thousands at small lam.
    fidelity "l1": min_{0<=x<=1} ||x - y||_1 + lam TV(x) (TV-L1 for impulse noise), K = grad; the primal prox
      is a soft-threshold towards y, then the box; tau = sigma = 0.99 / sqrt(8).
    Returns (x [B, H, W, C] with A's input shape, p [..., 2], q): for "l2" q = A x - y, the data term's
    optimal dual at x, so (p, q) certifies the gap of min 1/2||Ax - y||^2 + lam TV + box; for "l1" q = 0.
    """
    if fidelity == "l1":
        step = 0.99 / math.sqrt(8.0)

        def body(_, carry):
            x, x_bar, p = carry
            p = _project(p + step * gradient(x_bar), lam)
            v = x - step * gradient_adjoint(p) - y
            x_new = jnp.clip(y + jnp.sign(v) * jnp.maximum(jnp.abs(v) - step, 0.0), 0.0, 1.0)
            return x_new, 2.0 * x_new - x, p

        x, _, p = jax.lax.fori_loop(0, iterations, body, (y, y, jnp.zeros(y.shape + (2,), y.dtype)))
        return x, p, jnp.zeros_like(y)
    op = (lambda x: x) if kind == "identity" else degrade.operator(kind, level)
    adjoint = (lambda r: r) if kind == "identity" else op.adjoint
    x = jnp.clip(adjoint(y) / adjoint(jnp.ones_like(y)), 0.0, 1.0)   # normalised back-projection
    dec = spectral.decompose(kind, level, y, x.shape)
    c = 0.99 / 3.0
    tau, sigma = 10.0 * c, c / 10.0

    def body(_, carry):
        x, x_bar, p, r = carry
        p = _project(p + sigma * gradient(x_bar), lam)
        v = r + sigma * x_bar
        r = v - sigma * jnp.clip(v / sigma, 0.0, 1.0)
        x_new = spectral.data_prox(dec, x - tau * (gradient_adjoint(p) + r), tau)
        return x_new, 2.0 * x_new - x, p, r

    x, _, p, _ = jax.lax.fori_loop(0, iterations, body, (x, x, jnp.zeros(x.shape + (2,), x.dtype), jnp.zeros_like(x)))
    x = jnp.clip(x, 0.0, 1.0)
    return x, p, op(x) - y


def _project(p, lam):
    """Projection onto {|p_ij| <= lam} (the dual ball of lam TV, isotropic)."""
    return p / jnp.maximum(1.0, _magnitude(p)[..., None] / lam)


@partial(jax.jit, static_argnames=("radius",))
def bilateral(x, sigma_color, sigma_spatial, radius: int):
    """Bilateral filter (Tomasi & Manduchi 1998) with reflecting boundary:
    u(i) = sum_j w_ij x(j) / sum_j w_ij over the (2r+1)^2 window,
    w_ij = exp(-|i - j|^2 / (2 sigma_spatial^2)) exp(-|x(i) - x(j)|^2 / (2 sigma_color^2)),
    |x(i) - x(j)| over all channels. With sigma_color -> inf it is the normalised Gaussian blur."""
    _, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="symmetric")
    num, den = jnp.zeros_like(x), jnp.zeros_like(x[..., :1])
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            nb = padded[:, radius + dy: radius + dy + h, radius + dx: radius + dx + w]
            wgt = jnp.exp(-(dy * dy + dx * dx) / (2 * sigma_spatial**2)
                          - jnp.sum((nb - x) ** 2, -1, keepdims=True) / (2 * sigma_color**2))
            num, den = num + wgt * nb, den + wgt
    return num / den


def anscombe(z):
    """Anscombe's variance-stabilising transform 2 sqrt(z + 3/8): Poisson counts -> std ~ 1."""
    return 2.0 * np.sqrt(np.maximum(z, 0.0) + 3.0 / 8.0)


def inverse_anscombe(d):
    """Closed-form approximation of the exact unbiased inverse of the Anscombe transform
    (Makitalo & Foi 2011, "A closed-form approximation of the exact unbiased inverse of the Anscombe
    variance-stabilizing transformation", Eq. 1): E[anscombe(z) | lambda] = d  ->  lambda."""
    d = np.maximum(d, 0.8)
    s = np.sqrt(1.5)
    return np.maximum(d**2 / 4 + s / (4 * d) - 11 / (8 * d**2) + 5 * s / (8 * d**3) - 1 / 8, 0.0)


# --- library restorers, per image --------------------------------------------------------------------------

def _per_image(fn, y, masks=None, **kw):
    """Applies fn([H, W] or [H, W, 3] numpy image, [mask [H, W],] **kw) -> same shape to each image."""
    y = np.asarray(y, np.float64)
    masks = [{}] * len(y) if masks is None else [{"mask": m[..., 0]} for m in np.asarray(masks, np.float64)]
    with ThreadPoolExecutor(os.cpu_count()) as pool:   # the libraries release the GIL in their inner loops
        out = list(pool.map(lambda a: fn(a[0][..., 0] if a[0].shape[-1] == 1 else a[0], **a[1], **kw),
                            zip(y, masks)))
    return jnp.asarray(np.stack(out).reshape(y.shape), jnp.float32)


def _psf(std):
    k = degrade.gaussian_kernel(std)
    return np.outer(k, k)


def _median(img, size, passes=1):
    import scipy.ndimage as ndi
    for _ in range(passes):
        img = ndi.median_filter(img, size=(size, size) + (1,) * (img.ndim - 2), mode="reflect")
    return img


def _tv(img, weight):
    from skimage.restoration import denoise_tv_chambolle
    return denoise_tv_chambolle(img, weight=weight, channel_axis=-1 if img.ndim == 3 else None)


def _nl_means(img, h):
    from skimage.restoration import denoise_nl_means
    return denoise_nl_means(img, h=h, patch_size=5, patch_distance=6, fast_mode=True,
                            channel_axis=-1 if img.ndim == 3 else None)


def _bm3d(img, sigma):
    """BM3D (Dabov et al. 2007) with the exact group variances of Makinen et al. 2020 computed on a 16 x 16 noise
    PSD (nf) rather than the library's 32 x 32, which is larger than a 28 x 28 digit (docs/performance.md)."""
    import bm3d
    profile = bm3d.BM3DProfile()
    profile.num_threads = 1   # one image per thread of `_per_image`'s pool
    profile.nf = 16
    return bm3d.bm3d(img, sigma_psd=sigma, profile=profile)


def _bm3d_anscombe(img, peak, scale):
    """BM3D in the Anscombe domain of the counts peak * y (noise std 1 there, times `scale`), then the
    exact unbiased inverse."""
    return inverse_anscombe(_bm3d(anscombe(img * peak), scale)) / peak


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
    `applies_to`, tuned over `grid` (parameter name -> `tuning.Axis`; the grid grows past its edges)."""

    name: str
    applies_to: tuple
    grid: dict
    restore: Callable
    extra: str | None = None   # the install extra whose package it needs, e.g. "bm3d"

    def available(self) -> bool:
        """Whether its package is installed (`pip install 'diffjax[<extra>]'`)."""
        return self.extra is None or importlib.util.find_spec(self.extra) is not None

    def first_params(self) -> dict:
        return {k: a.values[0] for k, a in self.grid.items()}


def _bilateral_method(obs, sigma_color, sigma_spatial):
    return bilateral(obs.y, sigma_color, sigma_spatial, radius=int(math.ceil(3 * sigma_spatial)))


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("degraded", NOISE + ("blur",), {}, lambda obs: obs.y),
    Method("heat", NOISE, {"t": scales(0.1, 0.25, 0.5, 1.0, 2.0, lo=1e-3, hi=50.0)},
           lambda obs, t: heat(obs.y, t)),
    Method("perona_malik_exp", NOISE, {"kappa": scales(0.05, 0.1, 0.2, 0.4, hi=10.0), "steps": counts(5, 20, hi=200)},
           lambda obs, kappa, steps: perona_malik(obs.y, kappa, steps, 0.2, "exponential")),
    Method("perona_malik_rational", NOISE,
           {"kappa": scales(0.05, 0.1, 0.2, 0.4, hi=10.0), "steps": counts(5, 20, hi=200)},
           lambda obs, kappa, steps: perona_malik(obs.y, kappa, steps, 0.2, "rational")),
    Method("median", NOISE, {"size": counts(3, 5, lo=3, hi=9), "passes": counts(1, 2, 3, hi=8)},
           lambda obs, size, passes: _per_image(_median, obs.y, size=size, passes=passes)),
    Method("tv_chambolle", NOISE + ("blur",), {"weight": scales(0.05, 0.1, 0.2, 0.4, 0.8, hi=10.0)},
           lambda obs, weight: _per_image(_tv, obs.y, weight=weight)),
    Method("tv_l1", ("salt_pepper",), {"lam": scales(0.3, 0.6, 1.2, lo=0.01, hi=10.0)},
           lambda obs, lam: tv_pdhg(obs.y, lam, fidelity="l1", iterations=400)[0]),
    Method("tv_deconv", ("blur",), {"lam": scales(0.001, 0.003, 0.01, 0.03, lo=1e-5, hi=1.0),
                                    "iterations": counts(100, 300, hi=2000)},
           lambda obs, lam, iterations: tv_pdhg(obs.y, lam, kind="blur", level=float(obs.level),
                                                iterations=iterations)[0]),
    Method("tv_sr", ("downsample",), {"lam": scales(0.001, 0.003, 0.01, 0.03, lo=1e-5, hi=1.0),
                                      "iterations": counts(100, 300, hi=2000)},
           lambda obs, lam, iterations: tv_pdhg(obs.y, lam, kind="downsample", level=int(obs.level),
                                                iterations=iterations)[0]),
    Method("bilateral", NOISE, {"sigma_color": scales(0.1, 0.3, hi=10.0), "sigma_spatial": scales(1.0, 2.0, lo=0.3,
                                                                                                  hi=4.0)},
           _bilateral_method),
    Method("nl_means", NOISE, {"h": scales(0.05, 0.1, 0.2, 0.4, 0.6, hi=10.0)},
           lambda obs, h: _per_image(_nl_means, obs.y, h=h)),
    Method("bm3d", ("gaussian",), {"scale": scales(0.8, 1.0, 1.25, lo=0.2, hi=5.0)},
           lambda obs, scale: _per_image(_bm3d, obs.y, sigma=scale * float(obs.level)), extra="bm3d"),
    Method("bm3d_anscombe", ("poisson",), {"scale": scales(0.8, 1.0, 1.25, lo=0.2, hi=5.0)},
           lambda obs, scale: _per_image(_bm3d_anscombe, obs.y, peak=float(obs.level), scale=scale), extra="bm3d"),
    Method("wiener", ("blur",), {"balance": scales(0.003, 0.01, 0.03, 0.1, lo=1e-5, hi=10.0)},
           lambda obs, balance: _per_image(_wiener, obs.y, std=obs.level, balance=balance)),
    Method("richardson_lucy", ("blur",), {"num_iter": counts(10, 30, 100, 200, hi=1000)},
           lambda obs, num_iter: _per_image(_richardson_lucy, obs.y, std=obs.level, num_iter=num_iter)),
    Method("harmonic", INPAINT, {}, lambda obs: harmonic_inpaint(obs.y, obs.mask)),
    Method("biharmonic", INPAINT, {}, lambda obs: _per_image(_biharmonic, obs.y, masks=obs.mask)),
    Method("nearest", ("downsample",), {}, lambda obs: _resize(obs.y, int(obs.level), 0)),
    Method("bilinear", ("downsample",), {}, lambda obs: _resize(obs.y, int(obs.level), 1)),
    Method("bicubic", ("downsample",), {}, lambda obs: _resize(obs.y, int(obs.level), 3)),
]}


def available() -> list[str]:
    """The names of the methods whose packages are installed."""
    return sorted(n for n, m in METHODS.items() if m.available())


def get(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    if not METHODS[name].available():
        raise ValueError(f"method {name!r} needs the {METHODS[name].extra!r} package: pip install "
                         f"'diffjax[{METHODS[name].extra}]' (see its license), or leave {name!r} out")
    return METHODS[name]


def restore(name: str, obs: Observation, **params):
    """Runs method `name` on an observation, clipping the result to [0, 1]."""
    method = get(name)
    if obs.kind not in method.applies_to:
        raise ValueError(f"method {name!r} does not apply to {obs.kind!r}; it restores {method.applies_to}")
    return jnp.clip(method.restore(obs, **params), 0.0, 1.0)
