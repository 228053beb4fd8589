"""Sample from a trained run: python -m experiments.sample --run RUN [--sampler ddim --steps 50].

The run's config says its process (gaussian, blurring, ihdm) and so the default sampler. Writes into --out
(default RUN/samples) NAME.npz (uint8 NHWC under key `images`), NAME.png (a grid) and, with --trajectory,
NAME_trajectory.png: one row per image, x_t at a few timesteps left to right (for the heat processes: a blob
sharpening into a digit). NAME says what made them: sampler, steps, eta, seed (and label, guidance).
"""

import time
from pathlib import Path

import jax
import numpy as np
from absl import flags

from diffjax import data, files, generate, images, processes, samplers, train
from experiments import cli

flags.DEFINE_string("run", None, "run directory written by experiments.train_ddpm", required=True)
flags.DEFINE_enum("sampler", None, sorted(samplers.SAMPLERS),
                  "sampler (default: the run's process's: heun, blurring or ihdm)")
flags.DEFINE_integer("steps", None, "sampler steps (default: the sampler's own, e.g. heun 10, dpmpp_2m 20, ddim 50; "
                     "DDPM and IHDM take all their levels; Heun calls the network twice per step but the last)",
                     lower_bound=1)
flags.DEFINE_float("eta", 0.0, "DDIM eta: 0 deterministic, 1 DDPM-like", lower_bound=0.0)
flags.DEFINE_enum("variance", "fixed_small", list(samplers.VARIANCES), "DDPM reverse variance")
flags.DEFINE_integer("num", 64, "number of images", lower_bound=1)
flags.DEFINE_integer("batch_size", 256, "images per sampler call (rounded to a multiple of the device count)",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "sampling seed")
flags.DEFINE_string("out", None, "output directory (default: RUN/samples)")
flags.DEFINE_integer("label", None, "class to sample from a class-conditional run (default: one row per class)",
                     lower_bound=0)
flags.DEFINE_float("guidance", 0.0, "classifier-free guidance weight w: eps = (1 + w) eps(y) - w eps(null)",
                   lower_bound=0.0)
flags.DEFINE_integer("trajectory", 0, "if > 0, also save a strip of x_t at this many timesteps",
                     lower_bound=0)


def main(argv):
    del argv
    f = flags.FLAGS
    cfg, graphdef, params, step = train.restore_ema(f.run)
    sampler = processes.sampler_for(cfg, f.sampler)
    steps = f.steps or samplers.SAMPLERS[sampler].default_steps
    labels, ncols = generate.class_labels(cfg.model.num_classes, f.label, f.guidance, f.num)
    prior = processes.load_prior(cfg, f.run) if sampler == "ihdm" else None
    p = processes.make(cfg)
    calls = samplers.nfe(sampler, steps, p.num_timesteps)
    eta = processes.sampling_eta(cfg, f.eta)   # an IHDM run's own sampling noise delta
    made_by = samplers.settings(sampler, steps, eta, p.num_timesteps)
    name = files.output_name(sampler=sampler, **made_by, seed=f.seed, label=f.label,
                           w=f.guidance if cfg.model.num_classes else None)
    out = Path(f.out or Path(f.run) / "samples") / f"{name}.npz"
    shape = (cfg.data.image_size, cfg.data.image_size, cfg.data.channels)
    with files.exclusive(out.parent, remove_if_unused=True):   # one writer per output folder
        tic = time.perf_counter()
        result = generate.sample(graphdef, params, p, jax.random.PRNGKey(f.seed), f.num, shape, sampler=sampler,
                                 steps=steps, eta=eta, batch_size=f.batch_size,
                                 prediction=processes.prediction(cfg), num_frames=f.trajectory, progress=True,
                                 prior=prior, variance=f.variance, labels=labels, guidance=f.guidance)
        x, frames = result if f.trajectory else (result, None)
        seconds = time.perf_counter() - tic
        images.save_npz(out, data.to_uint8(x))
        images.save_grid(out.with_suffix(".png"), x, ncols=ncols)
        if f.trajectory:
            rows = min(f.num, 8)  # [rows, frames] strip: noise on the left, the sample on the right
            strip = np.swapaxes(frames[:, :rows], 0, 1).reshape(-1, *shape)
            images.save_grid(out.with_name(out.stem + "_trajectory.png"), strip, ncols=f.trajectory)
    print(f"{f.num} images from step {step} with {sampler} ({made_by['steps']} steps, {calls} network calls) in {seconds:.1f}s "
          f"({f.num / seconds:.1f} images/s) -> {out}")


def console_main():
    cli.run(main)


if __name__ == "__main__":
    console_main()
