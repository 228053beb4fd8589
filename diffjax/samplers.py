"""Reverse-process samplers, each one `lax.scan` inside one jit: DDPM (ancestral), DDIM, DPM-Solver++
(2M, 3M) and Heun for the Gaussian process, the ancestral sampler of blurring diffusion, and the inverse
heat dissipation sampler.

Every sampler takes `eps_fn(x_t, t) -> eps` (for IHDM: the network's residual), x_t: [B, H, W, C]
float32, t: [B] int32. Samplers know nothing about networks: pass a `jax.tree_util.Partial(apply,
params)` to have the parameters traced as arguments (not baked in as constants), or any callable.
"""

import contextlib
from dataclasses import dataclass
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from diffjax import gaussian, heat
from diffjax.schedules import Schedule

VARIANCES = ("fixed_small", "fixed_large")


def ddim_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
    """`num_steps` uniformly spaced timesteps from T-1 down to 0, as explicit ints. [S]."""
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"steps must be in [1, T={num_timesteps}], got {num_steps}")
    return np.round(np.linspace(num_timesteps - 1, 0, num_steps)).astype(np.int32)


def logsnr_timesteps(s: Schedule, num_steps: int) -> np.ndarray:
    """`num_steps` distinct timesteps from T-1 down to 0 whose half log-SNRs lambda_t = log(alpha_t / sigma_t)
    are as close to uniformly spaced as integers allow (DPM-Solver's "logSNR" skip type, Lu et al. 2022,
    App. D.1): equal steps h make the multistep extrapolation ratios r = 1. [S] int32."""
    ddim_timesteps(s.num_timesteps, num_steps)  # validates num_steps
    ab = np.asarray(s.alphas_cumprod, np.float64)
    lam = 0.5 * (np.log(ab) - np.log1p(-ab))  # decreasing in t
    targets = np.linspace(lam[-1], lam[0], num_steps)
    t = np.round(np.interp(targets, lam[::-1], np.arange(len(lam))[::-1])).astype(np.int64)
    for i in range(1, num_steps):  # strictly decreasing and within [0, T-1]
        t[i] = min(t[i], t[i - 1] - 1)
    t[-1] = max(t[-1], 0)
    for i in range(num_steps - 2, -1, -1):
        t[i] = max(t[i], t[i + 1] + 1)
    return t.astype(np.int32)


SPACINGS = {"uniform": lambda s, n: ddim_timesteps(s.num_timesteps, n), "logsnr": logsnr_timesteps}


def _x0_and_eps(eps_fn, s, x, t, clip_x0):
    eps = eps_fn(x, t)
    x0 = gaussian.predict_x0_from_eps(s, x, t, eps)
    if clip_x0:
        x0 = jnp.clip(x0, -1.0, 1.0)
        eps = gaussian.predict_eps_from_x0(s, x, t, x0)
    return x0, eps


def _ddpm_step(eps_fn, s, x, t, t_prev, key, *, variance, clip_x0, eta):
    """x_{t-1} ~ N(mu~_t(x0_hat, x_t), sigma_t^2 I) (Ho et al. 2020, Eq. 6-7 and Sec. 3.2).

    sigma_t^2 = beta~_t ("fixed_small") or beta_t ("fixed_large", with beta~_1 at t=0,
    as in Nichol & Dhariwal 2021). No noise at the last step.
    """
    del t_prev, eta
    x0, _ = _x0_and_eps(eps_fn, s, x, t, clip_x0)
    mean, small = gaussian.q_posterior_mean_variance(s, x0, x, t)
    if variance == "fixed_small":
        var = small
    else:
        large = jnp.concatenate([gaussian.posterior_variance(s)[1:2], s.betas[1:]])
        var = large[t].reshape(small.shape)
    noise = jax.random.normal(key, x.shape, x.dtype)
    return mean + jnp.where(t[0] > 0, jnp.sqrt(var), 0.0) * noise


def _ddim_step(eps_fn, s, x, t, t_prev, key, *, variance, clip_x0, eta, condition=None):
    """Song et al. 2021, "Denoising Diffusion Implicit Models", Eq. 12 and 16:
      x_{t'} = sqrt(ab') x0_hat + sqrt(1 - ab' - sigma^2) eps_hat + sigma z,
      sigma = eta sqrt((1 - ab') / (1 - ab)) sqrt(1 - ab / ab'),  ab' = alpha_bar_{t'} (1 at t' = -1).
    `condition(x0_hat, noise, ab', key) -> (x0, noise)` may change x0_hat and the noise term
    (everything after sqrt(ab') x0_hat) before they are combined: the hook of the conditioned samplers.
    """
    del variance
    x0, eps = _x0_and_eps(eps_fn, s, x, t, clip_x0)
    ab = s.alphas_cumprod[t[0]]
    ab_prev = _alpha_bar(s, t_prev)
    sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
    if condition is not None:
        key, cond_key = jax.random.split(key)
    noise = jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0)) * eps + sigma * jax.random.normal(key, x.shape,
                                                                                                    x.dtype)
    if condition is not None:
        x0, noise = condition(x0, noise, ab_prev, cond_key)
    return jnp.sqrt(ab_prev) * x0 + noise


def _lambda(s, t):
    """Half the log-SNR, lambda_t = log(alpha_t / sigma_t) for a scalar int t in [-1, T); +inf at t = -1."""
    ab = _alpha_bar(s, t)
    return 0.5 * (jnp.log(ab) - jnp.log1p(-ab))


def _dpmpp_step(eps_fn, s, x, t, t_prev, key, *, variance, clip_x0, eta, memory):
    """One step of multistep DPM-Solver++ (Lu et al. 2022, "DPM-Solver++", Alg. 2 and App. B), data prediction,
    from s0 = t to t' = t_prev with h = lambda_t' - lambda_s0, phi = e^{-h} - 1 and x0_hat m0, m1, m2 at the
    last three times s0, s1, s2 (h0 = lambda_s0 - lambda_s1, h1 = lambda_s1 - lambda_s2, r_i = h_i / h):
      1st order: x_t' = (sigma_t'/sigma_s0) x - alpha_t' phi m0                                  (= DDIM)
      2nd order: ... - alpha_t' phi D1 / 2,  D1 = (m0 - m1) / r0
      3rd order: ... + alpha_t' (phi/h + 1) D1' - alpha_t' ((phi + h)/h^2 - 1/2) D2,
                 D1' = d0 + r0/(r0 + r1) (d0 - d1), D2 = (d0 - d1)/(r0 + r1), d0 = (m0 - m1)/r0, d1 = (m1 - m2)/r1.
    The order is min(order, steps taken + 1), 1 on the last step (to t' = -1, where sigma = 0) and at most 2
    on the one before. `memory` = (order, [m1, m2], [lambda_s1, lambda_s2], step index, number of steps)."""
    del variance, eta, key
    order, (m1, m2), (lam1, lam2), i, n = memory
    m0, _ = _x0_and_eps(eps_fn, s, x, t, clip_x0)
    lam_s, lam_t = _lambda(s, t[0]), _lambda(s, t_prev)
    ab_s, ab_t = _alpha_bar(s, t[0]), _alpha_bar(s, t_prev)
    alpha_t, h = jnp.sqrt(ab_t), lam_t - lam_s
    phi = jnp.expm1(-h)
    first = jnp.sqrt((1.0 - ab_t) / (1.0 - ab_s)) * x - alpha_t * phi * m0
    r0, r1 = (lam_s - lam1) / h, (lam1 - lam2) / h
    d0, d1 = (m0 - m1) / r0, (m1 - m2) / r1
    second = first - 0.5 * alpha_t * phi * d0
    third = (first + alpha_t * (phi / h + 1.0) * (d0 + r0 / (r0 + r1) * (d0 - d1))
             - alpha_t * ((phi + h) / h**2 - 0.5) * (d0 - d1) / (r0 + r1))
    k = jnp.minimum(jnp.minimum(order, i + 1), jnp.where(i == n - 1, 1, jnp.where(i == n - 2, 2, 3)))
    x = jnp.where(k == 1, first, jnp.where(k == 2, second, third))
    return x, (order, (m0, m1), (lam_s, lam1), i + 1, n)


def _heun_step(eps_fn, s, x, t, t_prev, key, *, variance, clip_x0, eta):
    """Heun's method on the probability-flow ODE (Karras et al. 2022, "Elucidating...", Alg. 1 without churn)
    in DDIM's coordinates: x_bar = x / sqrt(ab), sigma = sqrt((1 - ab) / ab), d x_bar / d sigma = eps(x, t).
    Euler's step is DDIM's (eta = 0); Heun averages eps at both ends. The last step (to sigma = 0) is Euler's."""
    del variance, eta, key
    x0, eps = _x0_and_eps(eps_fn, s, x, t, clip_x0)
    ab, ab_next = _alpha_bar(s, t[0]), _alpha_bar(s, t_prev)
    sigma, sigma_next = jnp.sqrt((1.0 - ab) / ab), jnp.sqrt((1.0 - ab_next) / ab_next)
    euler = jnp.sqrt(ab_next) * (x0 + sigma_next * eps)

    def heun(euler):
        _, eps_next = _x0_and_eps(eps_fn, s, euler, jnp.full_like(t, t_prev), clip_x0)
        return jnp.sqrt(ab_next) * (x0 + sigma * eps + (sigma_next - sigma) * 0.5 * (eps + eps_next))

    return jax.lax.cond(t_prev >= 0, heun, lambda euler: euler, euler)


def _blurring_step(eps_fn, p, x, t, t_prev, key, *, variance, clip_x0, eta):
    """u_s ~ q(u_s | u_t, u0_hat) per DCT frequency (Hoogeboom & Salimans 2023, Sec. 3), s = t_prev:
      u0_hat = (u_t - sigma_t DCT(eps_hat)) / alpha_t,  alpha_ts = alpha_t / alpha_s,
      sigma2_ts = sigma_t^2 - alpha_ts^2 sigma_s^2 = (1 - r) + sigma_s^2 (r - alpha_ts^2),  r = a_t^2 / a_s^2,
    both parts >= 0; then `gaussian.posterior`. With no dissipation this is `_ddpm_step` (fixed_small)."""
    del variance, eta
    h, w = x.shape[1:3]
    alpha_t, sigma2_t = heat.blurring_alpha_sigma(p, t, h, w)
    alpha_s, sigma2_s = heat.blurring_alpha_sigma(p, jnp.full_like(t, t_prev), h, w)
    u_t = heat.dct(x)
    u0 = (u_t - jnp.sqrt(sigma2_t) * heat.dct(eps_fn(x, t))) / alpha_t
    if clip_x0:
        u0 = heat.dct(jnp.clip(heat.idct(u0), -1.0, 1.0))
    alpha_ts = alpha_t / alpha_s
    r = (1.0 - sigma2_t) / (1.0 - sigma2_s)
    mean, var = gaussian.posterior(alpha_ts, (1.0 - r) + sigma2_s * (r - alpha_ts**2), alpha_s, sigma2_s, u0, u_t)
    return heat.idct(mean + jnp.sqrt(var) * jax.random.normal(key, x.shape, x.dtype))


def _ihdm_step(eps_fn, p, x, t, t_prev, key, *, variance, clip_x0, eta):
    """u_{k-1} = u_k + f(u_k, k) + delta eps, no noise on the last step (Rissanen et al. 2023, Alg. 2);
    `eta` is delta."""
    del p, t_prev, variance, clip_x0
    x = x + eps_fn(x, t)
    return x + jnp.where(t[0] > 1, eta, 0.0) * jax.random.normal(key, x.shape, x.dtype)


def _alpha_bar(s, t):
    """alpha_bar_t for a scalar int t in [-1, T), with alpha_bar_{-1} = 1."""
    return jnp.where(t >= 0, s.alphas_cumprod[jnp.maximum(t, 0)], 1.0)


def _renoise(s, x, t, t_next, key):
    """x_{t'} ~ q(x_{t'} | x_t) for t' > t: N(sqrt(ab'/ab) x_t, (1 - ab'/ab) I) (Lugmayr et al. 2022, RePaint)."""
    ratio = _alpha_bar(s, t_next) / _alpha_bar(s, t)
    return jnp.sqrt(ratio) * x + jnp.sqrt(1.0 - ratio) * jax.random.normal(key, x.shape, x.dtype)


_reporter = None   # called on the host with each finished step's index while `reporting` is active


@contextlib.contextmanager
def reporting(on_step):
    """Inside this block every sampler calls `on_step(i, n)` on the host after its step i of n (a progress bar), through
    `jax.debug.callback` (a program of its own: compiled apart from the silent one)."""
    global _reporter
    previous, _reporter = _reporter, on_step
    try:
        yield
    finally:
        _reporter = previous


def _report(i, n):
    if _reporter is not None:
        _reporter(int(i), int(n))


def _as_pytree(eps_fn):
    return eps_fn if isinstance(eps_fn, jax.tree_util.Partial) else jax.tree_util.Partial(eps_fn)


@partial(jax.jit, static_argnames=("step", "shape", "variance", "clip_x0", "num_frames", "out_sharding", "jumps",
                                   "report"))
def _scan(step, eps_fn, s, key, ts, eta, shape, variance, clip_x0, num_frames, out_sharding, jumps,
          condition=None, x_init=None, memory=None, report=False):
    """Runs x (x_init, or x_T ~ N(0, I)) through the pairs (ts[i], ts[i+1]), ts ending at -1: a reverse
    `step` where the time decreases, a forward re-noising jump where it increases (only if `jumps`).
    A multistep `step` takes and returns `memory` (a pytree carried along with x)."""
    constrain = (lambda x: jax.lax.with_sharding_constraint(x, out_sharding)) if out_sharding else (lambda x: x)
    init_key, loop_key = jax.random.split(key)
    x = constrain(jax.random.normal(init_key, shape, jnp.float32) if x_init is None else x_init)
    n = ts.shape[0] - 1
    frame_at = jnp.round(jnp.linspace(0, n - 1, max(num_frames, 1))).astype(jnp.int32)
    frames = jnp.zeros((num_frames,) + shape, jnp.float32)
    kw = dict(variance=variance, clip_x0=clip_x0, eta=eta)
    if condition is not None:
        kw["condition"] = condition

    def body(carry, i):
        x, frames, memory = carry
        t = jnp.full((shape[0],), ts[i], jnp.int32)
        k = jax.random.fold_in(loop_key, i)
        reverse = lambda x: step(eps_fn, s, x, t, ts[i + 1], k, **kw)  # noqa: E731
        if memory is not None:
            x, memory = step(eps_fn, s, x, t, ts[i + 1], k, **kw, memory=memory)
        elif jumps:
            x = jax.lax.cond(ts[i + 1] > ts[i], lambda x: _renoise(s, x, ts[i], ts[i + 1], k), reverse, x)
        else:
            x = reverse(x)
        x = constrain(x)
        if num_frames:
            hit = (frame_at == i).reshape((-1,) + (1,) * len(shape))
            frames = jnp.where(hit, x[None], frames)
        if report:
            jax.debug.callback(_report, i, n)
        return (x, frames, memory), None

    (x, frames, _), _ = jax.lax.scan(body, (x, frames, memory), jnp.arange(n))
    return x, frames


def _run(step, eps_fn, s, key, shape, ts, eta, variance, clip_x0, num_frames, out_sharding, condition=None,
         x_init=None, memory=None):
    ts = np.append(ts, -1).astype(np.int32)
    jumps = bool(np.any(np.diff(ts) > 0))
    x, frames = _scan(step, _as_pytree(eps_fn), s, key, jnp.asarray(ts), jnp.float32(eta), tuple(shape),
                      variance, clip_x0, num_frames, out_sharding, jumps, condition, x_init, memory,
                      report=_reporter is not None)
    return (x, frames) if num_frames else x


def ddpm_sample(eps_fn, s: Schedule, key, shape, *, variance: str = "fixed_small", clip_x0: bool = True,
                num_frames: int = 0, out_sharding=None):
    """Ancestral DDPM sampling through all T steps (Ho et al. 2020, Algorithm 2).

    Args:
      eps_fn: (x_t [B, H, W, C], t [B] int32) -> eps [B, H, W, C].
      s: the schedule the model was trained with.
      key: PRNG key; shape: (B, H, W, C).
      variance: "fixed_small" (beta~_t) or "fixed_large" (beta_t).
      clip_x0: clip the predicted x0 to [-1, 1] before each update.
      num_frames: if > 0, also return [num_frames, B, H, W, C] snapshots of x along the way.
      out_sharding: optional `jax.sharding.Sharding` for x (e.g. batch over a `data` axis).

    Returns:
      x0 samples [B, H, W, C] float32 (and the frames if `num_frames`).
    """
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {VARIANCES}")
    ts = np.arange(s.num_timesteps - 1, -1, -1, dtype=np.int32)
    return _run(_ddpm_step, eps_fn, s, key, shape, ts, 0.0, variance, clip_x0, num_frames, out_sharding)


def ddim_sample(eps_fn, s: Schedule, key, shape, num_steps: int = 50, eta: float = 0.0, *,
                clip_x0: bool = True, num_frames: int = 0, out_sharding=None, timesteps=None, condition=None,
                x_init=None):
    """DDIM sampling over `num_steps` uniformly skipped timesteps (Song et al. 2021, Eq. 12).

    eta=0 is the deterministic DDIM; eta=1 with all T steps is DDPM with beta~_t. Other
    arguments as in `ddpm_sample`; for conditioned sampling (`diffjax.restore`) also:
      timesteps: an explicit int sequence in [0, T) to visit instead of the uniform one (the chain
        ends at -1); where it increases, x is re-noised forward by q(x_t' | x_t) (RePaint's jumps).
      condition: a pytree callable (x0_hat, noise, ab', key) -> (x0_hat, noise), see `_ddim_step`.
      x_init: the starting x at timesteps[0] instead of x_T ~ N(0, I).
    """
    if timesteps is None:
        timesteps = ddim_timesteps(s.num_timesteps, num_steps)
    return _run(_ddim_step, eps_fn, s, key, shape, np.asarray(timesteps, np.int32), eta, "fixed_small", clip_x0,
                num_frames, out_sharding, condition, x_init)


def _spaced(s, num_steps, spacing):
    if spacing not in SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {sorted(SPACINGS)}")
    return SPACINGS[spacing](s, num_steps)


def dpm_solver_sample(eps_fn, s: Schedule, key, shape, num_steps: int = 20, order: int = 2, *,
                      spacing: str = "logsnr", clip_x0: bool = True, num_frames: int = 0, out_sharding=None):
    """Multistep DPM-Solver++ of `order` 2 ("2M") or 3 ("3M"), one network call per step (Lu et al. 2022,
    "DPM-Solver++"; the step math is in `_dpmpp_step`), over `num_steps` timesteps spaced uniformly in
    log-SNR (`logsnr_timesteps`; "uniform" in t is much worse at 10-20 steps: the step into t = 0 is then
    5x longer in lambda than the one before and the extrapolation overshoots). `clip_x0` clips the data
    prediction, as their thresholding does. Other arguments as in `ddpm_sample`."""
    if order not in (2, 3):
        raise ValueError(f"DPM-Solver++ order must be 2 or 3, got {order}")
    zeros = jnp.zeros(shape, jnp.float32)
    memory = (jnp.int32(order), (zeros, zeros), (jnp.float32(0), jnp.float32(0)), jnp.int32(0), jnp.int32(num_steps))
    return _run(_dpmpp_step, eps_fn, s, key, shape, _spaced(s, num_steps, spacing), 0.0, "fixed_small", clip_x0,
                num_frames, out_sharding, memory=memory)


def heun_sample(eps_fn, s: Schedule, key, shape, num_steps: int = 10, *, spacing: str = "logsnr",
                clip_x0: bool = True, num_frames: int = 0, out_sharding=None):
    """Heun's second-order method on the probability-flow ODE over `num_steps` timesteps (spaced as in
    `dpm_solver_sample`): 2 num_steps - 1 network calls (`_heun_step`). Other arguments as in `ddpm_sample`."""
    return _run(_heun_step, eps_fn, s, key, shape, _spaced(s, num_steps, spacing), 0.0, "fixed_small", clip_x0,
                num_frames, out_sharding)


def settings(sampler: str, num_steps: int, eta: float, num_timesteps: int) -> dict:
    """What a run of `sampler` depends on, for naming its outputs: its steps (all its levels where it takes no
    step count) and its noise (eta or delta; None where it has none)."""
    entry = SAMPLERS[sampler]
    options = entry.options(num_steps, eta, None, None)
    steps = num_steps if "num_steps" in options else entry.nfe(num_steps, num_timesteps)
    return {"steps": steps, "eta": options.get("eta", options.get("delta"))}


def nfe(sampler: str, num_steps: int, num_timesteps: int) -> int:
    """Network calls per image of `sampler` at `num_steps` (DDPM always takes all T; IHDM: its K levels)."""
    return SAMPLERS[sampler].nfe(num_steps, num_timesteps)


def blurring_sample(eps_fn, p: heat.Blurring, key, shape, num_steps: int | None = None, *, clip_x0: bool = False,
                    num_frames: int = 0, out_sharding=None):
    """Ancestral sampling of blurring diffusion from x_T ~ N(0, I) over `num_steps` uniformly skipped
    timesteps (all T if None); arguments as in `ddpm_sample`.

    No clipping by default, as in the paper: u0_hat = (u_t - sigma_t eps_hat) / alpha_t amplifies the
    error of eps_hat at a dissipated frequency by up to 1 / (a_t min_scale); the posterior mean only
    needs alpha_s / alpha_t of it, but clipping x0_hat in pixels would spread that error over every
    frequency (we saw noise-textured samples)."""
    ts = ddim_timesteps(p.num_timesteps, num_steps or p.num_timesteps)
    return _run(_blurring_step, eps_fn, p, key, shape, ts, 0.0, "fixed_small", clip_x0, num_frames, out_sharding)


def ihdm_sample(f_fn, p: heat.IHDM, key, shape, prior=None, delta: float = 0.02, *, start=None, num_frames: int = 0,
                out_sharding=None):
    """Inverse heat dissipation from k = K down to 0 (Rissanen et al. 2023, Alg. 2).

    Args:
      f_fn: (u [B, H, W, C], k [B] int32) -> the residual f with u_{k-1} ~ u_k + f.
      prior: [N, m, n, C] DCT coefficients of maximally blurred training images (`heat.ihdm_prior`); each
        chain starts at one of them, drawn uniformly, plus delta noise.
      delta: the std of the noise added at every step but the last (model units).
      start: (k, u_k [B, H, W, C]) to start at level k from u_k instead of from the prior (deblurring).
    Other arguments as in `ddpm_sample`.
    """
    prior_key, noise_key, key = jax.random.split(key, 3)
    if start is None:
        pick = jax.random.randint(prior_key, (shape[0],), 0, prior.shape[0])
        start = (p.num_timesteps - 1,
                 heat.ihdm_prior_images(jnp.asarray(prior)[pick], shape) + delta * jax.random.normal(noise_key, shape))
    level, x_init = start
    if not 1 <= level < p.num_timesteps:
        raise ValueError(f"IHDM starts at a level in [1, {p.num_timesteps - 1}], got {level}")
    ts = np.arange(level, 0, -1, dtype=np.int32)
    return _run(_ihdm_step, f_fn, p, key, shape, ts, delta, "fixed_small", False, num_frames, out_sharding,
                x_init=x_init)


def _steps_only(steps, eta, variance, prior) -> dict:
    return {"num_steps": steps}


@dataclass(frozen=True)
class Sampler:
    """A registry entry, all that `generate.sample`, `evaluate`, the NFE count and the CLI know of a sampler:
    `fn(eps_fn, process, key, shape, **options, num_frames=, out_sharding=)`, the forward `process` it reverses,
    its `default_steps`, `nfe(steps, T)` (network calls per image), and `options(steps, eta, variance, prior)`:
    the keyword arguments it takes of those settings. Calling the entry calls `fn`."""

    fn: Callable
    process: str
    default_steps: int
    nfe: Callable = lambda steps, num_timesteps: steps
    options: Callable = _steps_only

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


SAMPLERS: dict[str, Sampler] = {
    "ddim": Sampler(ddim_sample, "gaussian", 50, options=lambda steps, eta, variance, prior: {"num_steps": steps,
                                                                                             "eta": eta}),
    "ddpm": Sampler(ddpm_sample, "gaussian", 1000, nfe=lambda steps, num_timesteps: num_timesteps,
                    options=lambda steps, eta, variance, prior: {"variance": variance}),
    "dpmpp_2m": Sampler(partial(dpm_solver_sample, order=2), "gaussian", 20),
    "dpmpp_3m": Sampler(partial(dpm_solver_sample, order=3), "gaussian", 20),
    "heun": Sampler(heun_sample, "gaussian", 10, nfe=lambda steps, num_timesteps: 2 * steps - 1),
    "blurring": Sampler(blurring_sample, "blurring", 50),
    "ihdm": Sampler(ihdm_sample, "ihdm", 0, nfe=lambda steps, num_timesteps: num_timesteps - 1,
                    options=lambda steps, eta, variance, prior: {"prior": prior, "delta": eta}),
}
