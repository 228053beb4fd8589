"""Restoration by conditioned reverse sampling: a trained eps_fn plus an observation -> posterior samples.

Every method runs `samplers.ddim_sample` (one `lax.scan` in one jit) and conditions it through the
sampler's hook on (x0_hat, noise), through its explicit timesteps and start, or by wrapping eps_fn;
none forks the DDIM update. Observations and results are in [0, 1] image units, the model works in
[-1, 1]: for a linear A with A(1) known, x_m = 2 x - 1 gives y_m = 2 y - A(1) and noise std 2 sigma.

Methods (`METHODS`, each with the degradation kinds it restores and its tuning grid):
  denoise: Gaussian denoising with no guidance. y_m = x_m + 2 sigma n is, scaled by sqrt(alpha_bar_t),
    a draw of x_t where (1 - alpha_bar_t) / alpha_bar_t = (2 sigma)^2; we start at the first integer t
    whose ratio r_t is at least that, adding the missing noise sqrt(r_t - 4 sigma^2) exactly.
  repaint: RePaint (Lugmayr et al. 2022): known pixels replaced by the forward-noised observation at
    every step, with RePaint's jumps back (jump length, number of resamplings) to harmonise.
  ddnm: DDNM+ (Wang et al. 2023, Eq. 13-19): range/null-space decomposition x0 <- x0 - lam A^+(A x0 - y)
    in the operator's singular basis, with the noise-aware lam_t and the reduced fresh noise of DDNM+:
    mask (identity basis), block-average downsampling (block DCT: the DC term has singular value 1/f),
    the reflect-boundary Gaussian blur (diagonal in the DCT-II basis). Salt & pepper: impulses are
    detected (0 or 1 and far from the 5x5 median) and inpainted. The assumed noise std is tuned by a factor
    (`noise_scale`, see `_ddnm`): y's one noise draw is pulled in again at every step.
  dps: Diffusion posterior sampling (Chung et al. 2023), in score form:
    eps' = eps + sqrt(1 - alpha_bar_t) zeta grad_{x_t} ||r(y, A x0_hat(x_t))||, with a Gaussian
    residual r = y - A x0 or the Gaussian approximation of the Poisson likelihood r = (k - lam)/sqrt(k).
"""

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffjax import degrade, gaussian, heat, samplers, spectral
from diffjax.degrade import Observation
from diffjax.schedules import Schedule
from diffjax.tuning import scales


# --- units and observation checks ------------------------------------------------------------------------

def _to_model(x):
    return 2.0 * x - 1.0


def _to_image(x):
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def noise_sigma(obs: Observation) -> float:
    """The std of the additive Gaussian noise of an observation, in [0, 1] units."""
    return {"gaussian": float(obs.level), "blur": degrade.BLUR_NOISE_SIGMA}.get(obs.kind, 0.0)


def is_noisy(obs: Observation) -> bool:
    """Whether y carries random noise (Gaussian or Poisson), rather than only a deterministic operator."""
    return obs.kind == "poisson" or noise_sigma(obs) > 0


# --- DDNM+ --------------------------------------------------------------------------------------------

def impulse_mask(y, threshold: float = 0.25, size: int = 5):
    """1 where a pixel is kept, 0 where it looks like an impulse: exactly 0 or 1 and more than `threshold`
    away from the median of its size x size neighbourhood (edge-padded). [B, H, W, C] -> same.
    On the validation digits at 40% impulses, 5x5 leaves kept pixels whose error caps PSNR at 19.5 dB
    (3x3: 16.8 dB, 7x7: 18.8 dB); at 10%: 34.5 dB (3x3: 30.0 dB)."""
    _, h, w, _ = y.shape
    r = size // 2
    p = jnp.pad(y, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge")
    med = jnp.median(jnp.stack([p[:, i:i + h, j:j + w] for i in range(size) for j in range(size)]), axis=0)
    extreme = (y == 0.0) | (y == 1.0)
    return 1.0 - (extreme & (jnp.abs(y - med) > threshold)).astype(y.dtype)


@functools.lru_cache(maxsize=None)
def _ddnm_condition(basis: str, noise: str):
    """The DDNM+ hook for one basis and noise model ("none", "gaussian", "poisson"), compiled once for all
    noise levels: Partial(hook, noise_param, floor, y_hat, sv)(x0, noise, ab', key) -> (x0, noise)."""
    return functools.partial(_ddnm_update, basis, noise)


def _ddnm_update(basis, noise_model, noise_param, floor, y_hat, sv, x0, noise, ab_prev, key):
    """DDNM+ (Wang et al. 2023, Eq. 17-19) per singular coordinate i with sv_i > 0:
    lam_i = min(1, sigma_t sv_i / (a_t sigma_y)), c_i <- c_i - lam_i (c_i - y_hat_i), and the fresh noise of
    that coordinate shrunk to gamma_i^2 = sigma_t^2 - (a_t lam_i sigma_y / sv_i)^2 (a_t = sqrt(ab'),
    sigma_t = sqrt(1 - ab')), so x_{t'} keeps its marginal noise level. Gaussian noise: sigma_y = noise_param
    (model units). Poisson counts at peak = noise_param (pixel basis): Var y_i = x_i / peak, so sigma_y is
    the per-pixel map 2 sqrt(max(x0_i, floor) / peak) at the current estimate x0 (x0_i in [0, 1] units)."""
    del key
    a, sig = jnp.sqrt(ab_prev), jnp.sqrt(1.0 - ab_prev)
    observed = sv > 0
    safe_sv = jnp.where(observed, sv, 1.0)
    if noise_model == "poisson":
        sigma_y = 2.0 * jnp.sqrt(jnp.clip((x0 + 1.0) / 2.0, floor, 1.0) / noise_param)
    else:
        sigma_y = noise_param
    if noise_model != "none":
        lam = jnp.where(observed, jnp.minimum(1.0, sig * safe_sv / (a * sigma_y)), 0.0)
        gamma2 = jnp.where(observed, sig**2 - (a * lam * sigma_y / safe_sv) ** 2, sig**2)
        scale = jnp.where(sig > 0, jnp.sqrt(jnp.maximum(gamma2, 0.0)) / jnp.maximum(sig, 1e-12), 0.0)
    else:
        lam, scale = observed.astype(x0.dtype), None
    to, back = spectral.transforms(basis)
    c = to(x0)
    x0 = back(c - lam * (c - y_hat))
    if scale is not None:
        noise = back(scale * to(noise))
    return x0, noise


def _repaint_condition(y_m, mask, x0, noise, ab_prev, key):
    """Known pixels of x_{t'} become sqrt(ab') y + sqrt(1 - ab') z, a fresh draw of q(x_{t'} | y)."""
    fresh = jnp.sqrt(1.0 - ab_prev) * jax.random.normal(key, noise.shape, noise.dtype)
    return mask * y_m + (1.0 - mask) * x0, mask * fresh + (1.0 - mask) * noise


def repaint_timesteps(num_timesteps: int, num_steps: int, jump_length: int, resamplings: int) -> np.ndarray:
    """RePaint's schedule on the uniform `num_steps` grid: going down, at every `jump_length`-th grid point
    jump back up `jump_length` points, `resamplings - 1` times, before going on (Lugmayr et al. 2022, Alg. 1)."""
    grid = samplers.ddim_timesteps(num_timesteps, num_steps)
    left = {i: resamplings - 1 for i in range(jump_length, num_steps, jump_length)}
    path, i = [0], 0
    while i < num_steps - 1:
        i += 1
        path.append(i)
        if left.get(i, 0) > 0:
            left[i] -= 1
            i -= jump_length
            path.append(i)
    return grid[np.asarray(path)]


# --- DPS: guidance by wrapping eps_fn ----------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _dps_eps(kind: str, level, likelihood: str):
    op = degrade.operator(kind, level) if kind in ("blur", "downsample") else (lambda x: x)

    def eps(inner, s, y_m, mask, zeta, x_t, t):
        def residual_norm(x):
            e = inner(x, t)
            x0 = jnp.clip(gaussian.predict_x0_from_eps(s, x, t, e), -1.0, 1.0)
            ax = op(x0) if mask is None else mask * x0
            if likelihood == "poisson":      # counts k = peak y, rate lam = peak A x; r = (k - lam) / sqrt(k)
                k, lam = level * (y_m + 1) / 2, level * (ax + 1) / 2
                r = (k - lam) / jnp.sqrt(jnp.maximum(k, 1.0))
            else:
                r = y_m - ax
            return jnp.sum(jnp.sqrt(jnp.sum(r * r, axis=(1, 2, 3)))), e

        grad, e = jax.grad(residual_norm, has_aux=True)(x_t)
        b = jnp.sqrt(1.0 - s.alphas_cumprod[t]).reshape(-1, 1, 1, 1)
        return e + b * zeta * grad

    return eps


# --- the methods -------------------------------------------------------------------------------------------

def _denoise(eps_fn, s, key, obs, shape, steps: int = 50, eta: float = 1.0):
    sigma_m = 2.0 * float(obs.level)
    ab = np.asarray(s.alphas_cumprod, np.float32)   # NumPy: t0 is static, also under an outer jax.jit
    ratio = (1.0 - ab) / ab
    t0 = int(np.searchsorted(ratio, sigma_m**2))   # first t with r_t >= (2 sigma)^2 (ratio increases)
    if t0 >= s.num_timesteps:
        raise ValueError(f"noise std {obs.level} exceeds the schedule's largest noise level")
    k_init, k_run = jax.random.split(key)
    extra = math.sqrt(max(float(ratio[t0]) - sigma_m**2, 0.0))
    x_init = jnp.sqrt(s.alphas_cumprod[t0]) * (_to_model(obs.y) + extra * jax.random.normal(k_init, shape))
    ts = np.unique(np.round(np.linspace(0, t0, min(steps, t0 + 1))).astype(np.int32))[::-1]
    return samplers.ddim_sample(eps_fn, s, k_run, shape, eta=eta, timesteps=ts, x_init=x_init), len(ts)


def _repaint(eps_fn, s, key, obs, shape, steps: int = 50, jump_length: int = 5, resamplings: int = 3,
             eta: float = 1.0):
    ts = repaint_timesteps(s.num_timesteps, min(steps, s.num_timesteps), jump_length, resamplings)
    mask = jnp.broadcast_to(obs.mask, shape)
    cond = jax.tree_util.Partial(_repaint_condition, _to_model(obs.y) * mask, mask)
    return samplers.ddim_sample(eps_fn, s, key, shape, eta=eta, timesteps=ts, condition=cond), \
        int(np.sum(np.diff(np.append(ts, -1)) < 0))


def decompose(obs: Observation, shape) -> spectral.Decomposition:
    """The observation in its operator's singular basis, in model units (salt & pepper: detected impulses
    are the unobserved pixels)."""
    if obs.kind not in DDNM_KINDS:
        raise ValueError(f"ddnm restores {DDNM_KINDS}, not {obs.kind!r}")
    mask = impulse_mask(obs.y) if obs.kind == "salt_pepper" else obs.mask
    kind = "identity" if obs.kind in ("gaussian", "poisson") else obs.kind
    return spectral.decompose(kind, obs.level, _to_model(obs.y), shape, mask)


def _ddnm(eps_fn, s, key, obs, shape, steps: int = 50, eta: float = 0.85, floor: float = 0.1,
          noise_scale: float = 1.0):
    """`noise_scale` k multiplies the observation noise std sigma_y that DDNM+ assumes. DDNM+ treats the noise
    its range-space step pulls in from y as fresh at every step, but y's noise is one fixed draw, so it adds up
    coherently along the chain; k > 1 lowers every lam_t and undoes that (tuned per level; docs/results.md)."""
    dec = decompose(obs, shape)
    if obs.kind == "poisson":
        model, param = "poisson", float(obs.level) / noise_scale**2   # sigma_y = 2 sqrt(x / peak) scaled by k
    else:
        param = 2.0 * noise_sigma(obs) * noise_scale
        model = "gaussian" if is_noisy(obs) else "none"
    cond = jax.tree_util.Partial(_ddnm_condition(dec.basis, model), jnp.float32(param), jnp.float32(floor),
                                 dec.y_hat, dec.sv)
    steps = min(steps, s.num_timesteps)
    return samplers.ddim_sample(eps_fn, s, key, shape, num_steps=steps, eta=eta, condition=cond), steps


def _dps(eps_fn, s, key, obs, shape, steps: int = 100, zeta: float = 1.0, eta: float = 1.0):
    likelihood = "poisson" if obs.kind == "poisson" else "gaussian"
    mask = obs.mask if obs.kind in ("inpaint_box", "inpaint_random") else None
    level = float(obs.level)   # the peak (poisson), blur std or factor; static, so one compile per level
    kind = obs.kind if obs.kind in ("blur", "downsample") else "none"
    y_m = 2 * obs.y - mask if mask is not None else _to_model(obs.y)
    steps = min(steps, s.num_timesteps)
    guided = jax.tree_util.Partial(_dps_eps(kind, level, likelihood), samplers._as_pytree(eps_fn), s, y_m, mask,
                                   jnp.float32(zeta))
    return samplers.ddim_sample(guided, s, key, shape, num_steps=steps, eta=eta), steps


def _ihdm(f_fn, p, key, obs, shape, delta: float = 0.02):
    """Deblurring by inverse heat dissipation (Rissanen et al. 2023): a blur of std sigma is heat(x, sigma^2/2),
    so y is u_k (plus the observation's noise, like the training input's) at the level k whose t_k is nearest
    to sigma^2 / 2 in log t; the IHDM sampler runs from there down to k = 0."""
    times = np.asarray(p.times)
    k = 1 + int(np.argmin(np.abs(np.log(times[1:] / (float(obs.level) ** 2 / 2)))))
    return samplers.ihdm_sample(f_fn, p, key, shape, delta=delta, start=(k, _to_model(obs.y))), k


class Method(NamedTuple):
    """A conditioned sampler: `run(eps_fn, s, key, obs, shape, **params) -> (x in model units, NFE)`, using the
    network and process object of a run trained with the forward `process` ("gaussian" or "ihdm")."""

    name: str
    applies_to: tuple
    grid: dict
    run: Callable
    process: str = "gaussian"


DDNM_KINDS = ("inpaint_box", "inpaint_random", "downsample", "blur", "salt_pepper", "gaussian", "poisson")
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("denoise", ("gaussian",), {}, _denoise),
    Method("repaint", ("inpaint_box", "inpaint_random"), {}, _repaint),
    Method("ddnm", DDNM_KINDS, {"eta": scales(0.5, 0.85, 1.0, lo=0.05, hi=1.0),
                                "noise_scale": scales(1.0, 2.0, 4.0, lo=0.5, hi=16.0)}, _ddnm),
    Method("dps", ("gaussian", "poisson", "blur", "downsample", "inpaint_box", "inpaint_random"),
           {"zeta": scales(0.3, 1.0, 3.0, lo=0.01, hi=100.0)}, _dps),
    Method("ihdm", ("blur",), {"delta": scales(0.005, 0.01, 0.02, lo=1e-4, hi=0.2)}, _ihdm, "ihdm"),
]}


def tuning_grid(name: str, obs: Observation) -> dict:
    """The method's grid for this observation: without observation noise `noise_scale` changes nothing."""
    grid = dict(get(name).grid)
    if not is_noisy(obs):
        grid.pop("noise_scale", None)
    return grid


def get(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown restoration method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]


def check(name: str, obs: Observation, image_shape) -> Method:
    """The method, after checking that it applies to the observation and that the shapes agree."""
    method = get(name)
    if obs.kind not in method.applies_to:
        users = sorted(n for n, m in METHODS.items() if obs.kind in m.applies_to)
        raise ValueError(f"method {name!r} does not restore {obs.kind!r} (it restores {method.applies_to}); "
                         f"for {obs.kind!r} use one of {users}")
    if len(image_shape) != 4:
        raise ValueError(f"image shape must be [B, H, W, C], got {tuple(image_shape)}")
    expected = tuple(image_shape)
    if obs.kind == "downsample":
        f = int(obs.level)
        expected = (image_shape[0], image_shape[1] // f, image_shape[2] // f, image_shape[3])
    if tuple(obs.y.shape) != expected:
        raise ValueError(f"observation {obs.kind} has shape {tuple(obs.y.shape)}, expected {expected} for images "
                         f"{tuple(image_shape)}")
    return method


def restore(name: str, eps_fn, s: Schedule, key, obs: Observation, *, image_shape=None, **params):
    """ONE posterior sample per image, [B, H, W, C] in [0, 1].

    Args:
      name: a key of METHODS; eps_fn, s: as the samplers take them (model space [-1, 1]).
      obs: from `degrade.degrade`; image_shape: the clean shape (default: y's, times the factor for
        super-resolution). Extra keyword arguments are the method's parameters.
    """
    return restore_with_nfe(name, eps_fn, s, key, obs, image_shape=image_shape, **params)[0]


def _image_shape(obs):
    b, h, w, c = obs.y.shape
    f = int(obs.level) if obs.kind == "downsample" else 1
    return (b, h * f, w * f, c)


def restore_with_nfe(name, eps_fn, s, key, obs, *, image_shape=None, **params):
    """`restore` plus the number of network evaluations it used."""
    shape = tuple(image_shape or _image_shape(obs))
    method = check(name, obs, shape)
    if (method.process == "ihdm") != isinstance(s, heat.IHDM):
        raise ValueError(f"method {name!r} needs the network of a {method.process} run, got a {type(s).__name__}")
    x, nfe = method.run(eps_fn, s, key, obs, shape, **params)
    return _to_image(x), nfe


def posterior_samples(name: str, eps_fn, s: Schedule, key, obs: Observation, num_samples: int = 4, *,
                      image_shape=None, **params):
    """`num_samples` posterior samples per image, drawn as one batch. Returns ([K, B, H, W, C] in [0, 1], NFE)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    shape = tuple(image_shape or _image_shape(obs))
    tile = lambda a: None if a is None else jnp.concatenate([a] * num_samples)  # noqa: E731
    many = obs._replace(y=tile(obs.y), mask=tile(obs.mask))
    x, nfe = restore_with_nfe(name, eps_fn, s, key, many, image_shape=(shape[0] * num_samples,) + shape[1:],
                              **params)
    return x.reshape((num_samples,) + shape), nfe


def posterior_mean(name: str, eps_fn, s: Schedule, key, obs: Observation, num_samples: int = 4, *,
                   image_shape=None, **params):
    """The average and the per-pixel std of `num_samples` posterior samples.

    PSNR rewards the posterior mean; a single sample is sharper. Returns (mean, std), [B, H, W, C]."""
    x, _ = posterior_samples(name, eps_fn, s, key, obs, num_samples, image_shape=image_shape, **params)
    return x.mean(0), x.std(0)
