"""Every config value checked against its domain before a run creates or compiles anything.

`check(cfg, num_devices)` raises one `ValueError` naming the first bad field, its value and what is
allowed, e.g. "config.train.batch_size = 0: must be an integer >= 1".
"""

import math
from pathlib import Path

from diffjax import data, gaussian, processes, schedules

DTYPES = ("float32", "bfloat16", "float16")
LR_DECAYS = ("constant", "cosine")  # diffjax.train.learning_rate


def _fail(field: str, value, allowed: str):
    raise ValueError(f"config.{field} = {value!r}: {allowed}")


def _int(cfg, field: str, lo: int, hi: int | None = None) -> int:
    value = _get(cfg, field)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        _fail(field, value, f"must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""))
    return value


def _real(cfg, field: str, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> float:
    value = _get(cfg, field)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        bounds = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        _fail(field, value, f"must be a number in {bounds}")
    return value


def _name(cfg, field: str, choices) -> str:
    value = _get(cfg, field)
    if value not in choices:
        _fail(field, value, f"must be one of {tuple(choices)}")
    return value


def _get(cfg, field: str):
    node = cfg
    for part in field.split("."):
        if part not in node:
            raise ValueError(f"config.{field} is missing: start from a config in experiments/configs")
        node = node[part]
    return node


def unet_resolutions(image_size: int, levels: int) -> list[int]:
    """The feature-map sizes of the UNet's levels: the image size halved at each of `levels - 1` downsamplings."""
    return [image_size // 2**i for i in range(levels)]


def check(cfg, num_devices: int = 1) -> None:
    """Raises ValueError on the first config field outside its domain."""
    inf = math.inf
    dataset = _name(cfg, "data.dataset", data.DATASETS)
    path = cfg.data.get("path", "")
    if path and (dataset != "cifar10" or not Path(path).is_file()):
        _fail("data.path", path, "must be the path of a cifar-10-python.tar.gz file, with data.dataset = 'cifar10'")
    size = _int(cfg, "data.image_size", 1)
    _int(cfg, "data.channels", 1)

    ch = _int(cfg, "model.ch", 1)
    mult = tuple(_get(cfg, "model.ch_mult"))
    if not mult or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mult):
        _fail("model.ch_mult", mult, "must be a non-empty tuple of integers >= 1")
    if size % 2 ** (len(mult) - 1):
        _fail("data.image_size", size, f"must be divisible by 2^{len(mult) - 1} = {2 ** (len(mult) - 1)}, the "
              f"UNet's total downsampling with model.ch_mult = {mult}")
    _int(cfg, "model.num_res_blocks", 1)
    groups = _int(cfg, "model.groups", 1)
    widths = sorted({ch} | {ch * m for m in mult})
    if any(w % groups for w in widths):
        _fail("model.groups", groups, f"must divide every channel count of the UNet {widths}")
    reachable = unet_resolutions(size, len(mult))
    bad = [r for r in _get(cfg, "model.attn_resolutions") if r not in reachable]
    if bad:
        _fail("model.attn_resolutions", tuple(_get(cfg, "model.attn_resolutions")),
              f"{bad} is not a resolution of this UNet; choose from {reachable}")
    _real(cfg, "model.dropout", 0.0, 1.0, hi_open=True)
    _int(cfg, "model.num_classes", 0)
    _name(cfg, "model.dtype", DTYPES)

    process = processes.name(cfg)
    if process not in processes.DEFAULT_SAMPLER:
        _fail("diffusion.process", process, f"must be one of {tuple(processes.DEFAULT_SAMPLER)}")
    if process == "ihdm":
        steps_t = _int(cfg, "diffusion.num_timesteps", 1)
        lo = _real(cfg, "diffusion.blur_sigma_min", 0.0, inf, lo_open=True, hi_open=True)
        _real(cfg, "diffusion.blur_sigma_max", lo, inf, hi_open=True)
        _real(cfg, "diffusion.train_noise", 0.0, inf, hi_open=True)
        _real(cfg, "diffusion.sample_noise", 0.0, inf, hi_open=True)
    else:
        _name(cfg, "diffusion.schedule", schedules.SCHEDULES)
        steps_t = _int(cfg, "diffusion.num_timesteps", 2)
        _name(cfg, "diffusion.prediction", ("eps",) if process == "blurring" else gaussian.PREDICTIONS)
        if "min_snr_gamma" in cfg.diffusion:  # absent in run directories written before it existed: 0 (off)
            gamma = _real(cfg, "diffusion.min_snr_gamma", 0.0, inf, hi_open=True)
            if gamma and process != "gaussian":
                _fail("diffusion.min_snr_gamma", gamma, "must be 0: only the gaussian process weights its loss")
        if _get(cfg, "diffusion.schedule") == "linear":
            start = _real(cfg, "diffusion.beta_start", 0.0, 1.0, lo_open=True, hi_open=True)
            _real(cfg, "diffusion.beta_end", start, 1.0, hi_open=True)
        if process == "blurring":
            _real(cfg, "diffusion.blur_sigma_max", 0.0, inf, hi_open=True)
            _real(cfg, "diffusion.min_scale", 0.0, 1.0, lo_open=True)

    _real(cfg, "optim.lr", 0.0, inf, lo_open=True, hi_open=True)
    _int(cfg, "optim.warmup_steps", 0)
    _real(cfg, "optim.grad_clip", 0.0, inf, lo_open=True)
    _real(cfg, "optim.b1", 0.0, 1.0, hi_open=True)
    _real(cfg, "optim.b2", 0.0, 1.0, hi_open=True)
    _real(cfg, "optim.weight_decay", 0.0, inf, hi_open=True)
    _real(cfg, "optim.ema_decay", 0.0, 1.0, hi_open=True)
    if "decay" in cfg.optim:  # absent in run directories written before it existed: constant
        _name(cfg, "optim.decay", LR_DECAYS)

    _int(cfg, "train.steps", 1)
    batch = _int(cfg, "train.batch_size", 1)
    if batch % num_devices:
        _fail("train.batch_size", batch, f"must be divisible by the {num_devices} devices")
    _real(cfg, "train.p_uncond", 0.0, 1.0)
    for field in ("log_every", "sample_every", "ckpt_every", "num_sample_images"):
        _int(cfg, "train." + field, 1)
    grid_sampler = cfg.train.get("sample_sampler", "")
    if grid_sampler and grid_sampler not in processes.samplers_of(process):
        _fail("train.sample_sampler", grid_sampler, f"must be '' (the process's own) or one of "
              f"{processes.samplers_of(process)}")
    if "ckpt_minutes" in cfg.train:
        _real(cfg, "train.ckpt_minutes", 0.0, inf, lo_open=True)
    _int(cfg, "train.sample_steps", 1, steps_t)
    if cfg.train.get("eval_every", 0):
        _int(cfg, "train.eval_every", 0)
        _int(cfg, "train.eval_num", 2)
        if (cfg.data.image_size, cfg.data.channels) != (28, 1):
            _fail("train.eval_every", cfg.train.eval_every, "the sample score is for 28x28 digits only; set it to 0")
    _real(cfg, "train.sample_eta", 0.0, inf, hi_open=True)
