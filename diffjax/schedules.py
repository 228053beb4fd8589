"""Noise schedules: beta_t and alpha_bar_t = prod_{i<=t} (1 - beta_i) as plain arrays.

Timesteps are 0-indexed: `betas[t]` is the paper's beta_{t+1} (Ho et al. 2020).
"""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class Schedule(NamedTuple):
    """A discrete variance schedule; a pytree, so it can be passed into `jax.jit`.

    Attributes:
      betas: float32 [T], the per-step noise variances beta_t in (0, 1).
      alphas_cumprod: float32 [T], alpha_bar_t = prod_{i<=t} (1 - beta_i).
    """

    betas: jnp.ndarray
    alphas_cumprod: jnp.ndarray

    @property
    def num_timesteps(self) -> int:
        return self.betas.shape[0]


def from_betas(betas) -> Schedule:
    """Builds a schedule from betas (cumulative product taken in float64)."""
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or not np.all((betas > 0) & (betas < 1)):
        raise ValueError("betas must be a 1-D array with every value in (0, 1)")
    return Schedule(jnp.asarray(betas, jnp.float32), jnp.asarray(np.cumprod(1.0 - betas), jnp.float32))


def linear(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """Linear betas from beta_start to beta_end (Ho et al. 2020, Sec. 4)."""
    return from_betas(np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64))


def cosine(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Cosine schedule (Nichol & Dhariwal 2021, Eq. 17).

    alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2), and
    beta_t = 1 - alpha_bar(t) / alpha_bar(t-1) clipped at `max_beta`.
    """
    steps = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    f = np.cos((steps + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, max_beta)
    return from_betas(betas)


SCHEDULES = {"linear": linear, "cosine": cosine}


def get(name: str, num_timesteps: int, **kwargs) -> Schedule:
    """Looks up a schedule by name."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](num_timesteps, **kwargs)
