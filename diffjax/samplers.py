"""Reverse-process samplers: DDPM (ancestral) and DDIM, each one `lax.scan` inside one jit.

Every sampler takes `eps_fn(x_t, t) -> eps`, x_t: [B, H, W, C] float32, t: [B] int32 in
[0, T). Samplers know nothing about networks: pass a `jax.tree_util.Partial(apply, params)`
to have the parameters traced as arguments (not baked in as constants), or any callable.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from diffjax import gaussian
from diffjax.schedules import Schedule

VARIANCES = ("fixed_small", "fixed_large")


def ddim_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
    """`num_steps` uniformly spaced timesteps from T-1 down to 0, as explicit ints. [S]."""
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"steps must be in [1, T={num_timesteps}], got {num_steps}")
    return np.round(np.linspace(num_timesteps - 1, 0, num_steps)).astype(np.int32)


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


def _alpha_bar(s, t):
    """alpha_bar_t for a scalar int t in [-1, T), with alpha_bar_{-1} = 1."""
    return jnp.where(t >= 0, s.alphas_cumprod[jnp.maximum(t, 0)], 1.0)


def _renoise(s, x, t, t_next, key):
    """x_{t'} ~ q(x_{t'} | x_t) for t' > t: N(sqrt(ab'/ab) x_t, (1 - ab'/ab) I) (Lugmayr et al. 2022, RePaint)."""
    ratio = _alpha_bar(s, t_next) / _alpha_bar(s, t)
    return jnp.sqrt(ratio) * x + jnp.sqrt(1.0 - ratio) * jax.random.normal(key, x.shape, x.dtype)


def _as_pytree(eps_fn):
    return eps_fn if isinstance(eps_fn, jax.tree_util.Partial) else jax.tree_util.Partial(eps_fn)


@partial(jax.jit, static_argnames=("step", "shape", "variance", "clip_x0", "num_frames", "out_sharding"))
def _scan(step, eps_fn, s, key, ts, eta, shape, variance, clip_x0, num_frames, out_sharding, condition=None,
          x_init=None):
    """Runs x (x_init, or x_T ~ N(0, I)) through the pairs (ts[i], ts[i+1]), ts ending at -1: a reverse
    `step` where the time decreases, a forward re-noising jump where it increases."""
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
        x, frames = carry
        t = jnp.full((shape[0],), ts[i], jnp.int32)
        k = jax.random.fold_in(loop_key, i)
        x = constrain(jax.lax.cond(ts[i + 1] > ts[i], lambda x: _renoise(s, x, ts[i], ts[i + 1], k),
                                   lambda x: step(eps_fn, s, x, t, ts[i + 1], k, **kw), x))
        if num_frames:
            hit = (frame_at == i).reshape((-1,) + (1,) * len(shape))
            frames = jnp.where(hit, x[None], frames)
        return (x, frames), None

    (x, frames), _ = jax.lax.scan(body, (x, frames), jnp.arange(n))
    return x, frames


def _run(step, eps_fn, s, key, shape, ts, eta, variance, clip_x0, num_frames, out_sharding, condition=None,
         x_init=None):
    ts = jnp.asarray(np.append(ts, -1), jnp.int32)
    x, frames = _scan(step, _as_pytree(eps_fn), s, key, ts, jnp.float32(eta), tuple(shape),
                      variance, clip_x0, num_frames, out_sharding, condition, x_init)
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


SAMPLERS = {"ddpm": ddpm_sample, "ddim": ddim_sample}
