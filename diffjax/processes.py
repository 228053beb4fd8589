"""The forward processes a run can be trained with, named by `config.diffusion.process`:

  gaussian  DDPM's noising (`gaussian.py`), sampled by DDIM or DDPM;
  blurring  blurring diffusion (`heat.py`): noise and heat dissipation, diagonal in the DCT basis;
  ihdm      inverse heat dissipation (`heat.py`): blur only, generated coarse to fine from a prior of
            maximally blurred training images kept in the run directory (`PRIOR_FILE`).

Models know nothing of the process: the UNet takes x and an integer timestep / level.
"""

from pathlib import Path

import numpy as np

from diffjax import data, files, gaussian, heat, images, samplers, schedules

# Each process's default sampler: for a Gaussian run the one that scores best at about 20 network calls
# (README, sample quality); a process's samplers are those of `samplers.SAMPLERS` that name it.
DEFAULT_SAMPLER = {"gaussian": "heun", "blurring": "blurring", "ihdm": "ihdm"}
PRIOR_FILE = "prior.npz"


def name(cfg) -> str:
    """The run's process: `diffusion.process`, "gaussian" where the config leaves it unset."""
    return cfg.diffusion.get("process", "gaussian")


def noise_schedule(cfg) -> schedules.Schedule:
    """The noise schedule of a gaussian or blurring run."""
    d = cfg.diffusion
    kwargs = dict(beta_start=d.beta_start, beta_end=d.beta_end) if d.schedule == "linear" else {}
    return schedules.get(d.schedule, d.num_timesteps, **kwargs)


def make(cfg):
    """The process object the loss and the samplers take: a `Schedule`, `heat.Blurring` or `heat.IHDM`."""
    d, kind = cfg.diffusion, name(cfg)
    if kind == "ihdm":
        return heat.ihdm(d.num_timesteps, d.blur_sigma_min, d.blur_sigma_max, d.train_noise)
    if kind == "blurring":
        return heat.blurring(noise_schedule(cfg), d.blur_sigma_max, d.min_scale)
    return noise_schedule(cfg)


def loss(cfg, p, model_fn, x0, key):
    """The training loss of the run's process for model_fn(x [B, H, W, C], t [B] int) on x0 in [-1, 1]."""
    kind = name(cfg)
    if kind == "ihdm":
        return heat.ihdm_loss(p, model_fn, x0, key)
    if kind == "blurring":
        return heat.blurring_loss(p, model_fn, x0, key)
    return gaussian.simple_loss(p, model_fn, x0, key, cfg.diffusion.prediction,
                                cfg.diffusion.get("min_snr_gamma", 0.0))


def samplers_of(process: str) -> tuple[str, ...]:
    """The samplers of `samplers.SAMPLERS` that reverse `process`."""
    return tuple(n for n, s in samplers.SAMPLERS.items() if s.process == process)


def sampler_for(cfg, sampler: str | None = None) -> str:
    """`sampler`, or the process's default one; a sampler of another process is one ValueError."""
    allowed = samplers_of(name(cfg))
    if sampler is None:
        return DEFAULT_SAMPLER[name(cfg)]
    if sampler not in allowed:
        raise ValueError(f"a {name(cfg)} run samples with {' or '.join(allowed)}, not {sampler!r}")
    return sampler


def prediction(cfg) -> str:
    """What the network's output is converted from: the config's for a gaussian run, eps for blurring
    diffusion, and for IHDM "eps" too, which leaves its residual output as it is."""
    return cfg.diffusion.prediction if name(cfg) == "gaussian" else "eps"


def sampling_eta(cfg, eta: float) -> float:
    """The sampler's noise: DDIM's `eta`, or the IHDM run's sampling noise delta."""
    return cfg.diffusion.sample_noise if name(cfg) == "ihdm" else eta


def write_prior(cfg, images_u8, path) -> np.ndarray:
    """Saves `heat.ihdm_prior` of the training images (in chunks, any dataset size) to `path`, atomically,
    and returns it."""
    p = make(cfg)
    coefs = np.concatenate([np.asarray(heat.ihdm_prior(p, data.to_float(images_u8[i:i + 1024])))
                            for i in range(0, len(images_u8), 1024)])
    images.save_arrays(path, coefficients=coefs)
    return coefs


def load_prior(cfg, workdir) -> np.ndarray:
    """The IHDM prior of a run directory, checked against the run's config: [N, m, n, C] float32."""
    path = Path(workdir) / PRIOR_FILE
    size, channels = cfg.data.image_size, cfg.data.channels
    m, n = heat.prior_frequencies(make(cfg), size, size)
    fix = f"run python -m experiments.train_ddpm --out {workdir} with the run's config to write it again"
    coefs = files.load_npz(path, fix).get("coefficients")
    if coefs is None:
        raise files.DamagedFileError(f"{path} holds no 'coefficients' array: {fix}")
    if coefs.ndim != 4 or coefs.shape[1:] != (m, n, channels) or not np.all(np.isfinite(coefs)):
        raise ValueError(f"{path} holds {coefs.shape} coefficients, expected [N, {m}, {n}, {channels}] finite "
                         f"ones; run python -m experiments.train_ddpm --out {workdir} to write it again")
    return coefs
