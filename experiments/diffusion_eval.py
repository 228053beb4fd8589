"""What the restore and compare_filters entry points share: a run's eps_fn and one scored restoration."""

import time
from typing import Any, NamedTuple

import numpy as np

from diffjax import generate, metrics, processes, restore, train


class Model(NamedTuple):
    """A run's network as the restoration methods take it."""

    eps_fn: Any       # eps_theta(x_t, t), or IHDM's residual f(u_k, k)
    s: Any            # the process object: a Schedule, or heat.IHDM
    step: int         # the checkpoint's training step
    process: str      # "gaussian" or "ihdm"


def model_eps_fn(workdir, image_shape) -> Model:
    """The EMA network of a gaussian or ihdm run, after checking the run matches the images."""
    cfg, graphdef, params, step = train.restore_ema(workdir)
    expected = (cfg.data.image_size, cfg.data.image_size, cfg.data.channels)
    if tuple(image_shape) != expected:
        raise ValueError(f"the run in {workdir} makes {expected} images but the data is {tuple(image_shape)}; "
                         f"use a run trained on this data")
    process = processes.name(cfg)
    if process not in {m.process for m in restore.METHODS.values()}:
        raise ValueError(f"the run in {workdir} is a {process} run; restoration needs a gaussian run "
                         f"(python -m experiments.train_ddpm) or an ihdm one (configs/mnist_heat.py)")
    s = processes.make(cfg)
    return Model(generate.eps_fn(graphdef, params, s, processes.prediction(cfg)), s, step, process)


def run_method(name, eps_fn, s, key, obs, clean, num_samples, **params):
    """`num_samples` posterior samples (one batch): the first scored as "the sample", their average as the
    posterior mean. Returns (record, sample, mean, std)."""
    tic = time.perf_counter()
    xs, nfe = restore.posterior_samples(name, eps_fn, s, key, obs, num_samples, image_shape=clean.shape, **params)
    xs = np.asarray(xs)   # waits for the device: the time below is the sampling's, not its dispatch's
    sample, mean, std = xs[0], xs.mean(0), xs.std(0)
    seconds = (time.perf_counter() - tic) / len(clean)
    record = {"method": name, "params": params, "nfe": nfe, "samples": num_samples,
              "seconds_per_image": seconds}
    for tag, x in (("sample", sample), ("mean", mean)):
        p, q = np.asarray(metrics.psnr(x, clean)), np.asarray(metrics.ssim(x, clean))
        record[tag] = {"psnr": float(p.mean()), "ssim": float(q.mean()), "psnr_per_image": p.tolist(),
                       "ssim_per_image": q.tolist()}
    return record, sample, mean, std
