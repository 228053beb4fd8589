"""What the restore and compare_filters entry points share: a run's eps_fn and one scored restoration."""

import time

import numpy as np

from diffjax import generate, metrics, processes, restore, train


def model_eps_fn(workdir, image_shape):
    """(eps_fn, schedule, step) of a run's EMA parameters, after checking the run matches the images."""
    cfg, graphdef, params, step = train.restore_ema(workdir)
    if processes.name(cfg) != "gaussian":
        raise ValueError(f"the run in {workdir} is a {processes.name(cfg)} run; restoration by conditioned "
                         f"reverse sampling needs a gaussian one (python -m experiments.train_ddpm)")
    expected = (cfg.data.image_size, cfg.data.image_size, cfg.data.channels)
    if tuple(image_shape) != expected:
        raise ValueError(f"the run in {workdir} makes {expected} images but the data is {tuple(image_shape)}; "
                         f"use a run trained on this data")
    s = processes.noise_schedule(cfg)
    return generate.eps_fn(graphdef, params, s, cfg.diffusion.prediction), s, step


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
