"""Restore images with a trained model: python -m experiments.restore --run RUN --degradation KIND --level L.

Restores test digits (or --folder PNGs) by every applicable conditioned sampler of `diffjax.restore`
(or --methods M,N) and writes into --out (default RUN/restore/<degradation>_level<level>_seed<seed>): grid.png (rows:
clean, degraded, then per method one posterior sample, the posterior mean of --posterior_samples draws and its
per-pixel std), restore.npz (uint8 arrays) and metrics.json (PSNR/SSIM of the sample and of the mean, NFE,
seconds per image).
"""

import json
from pathlib import Path

import jax
import numpy as np
from absl import flags

from diffjax import data, degrade, files, generate, images, restore
from experiments import cli
from diffjax.compare import model_eps_fn, run_method

flags.DEFINE_string("run", None, "run directory written by experiments.train_ddpm", required=True)
flags.DEFINE_string("degradation", "inpaint_box", f"one of {sorted(degrade.DEGRADATIONS)}")
flags.DEFINE_float("level", None, "degradation level (default: the first of degrade.DEFAULT_LEVELS)")
flags.DEFINE_list("methods", None, "restoration methods (default: every one that applies)")
flags.DEFINE_integer("num", 16, "images to restore", lower_bound=1)
flags.DEFINE_integer("posterior_samples", 4, "posterior draws per image, averaged into the posterior mean",
                     lower_bound=1)
flags.DEFINE_string("folder", None, "a folder of your own PNG images instead of the test digits")
flags.DEFINE_string("out", None, "output directory (default: RUN/restore/<degradation>_level<level>_seed<seed>)")
flags.DEFINE_integer("seed", 0, "seed of the degradation and the samplers")


def check_level(kind: str, level):
    """The level, after checking it lies in the degradation's domain."""
    domains = {"gaussian": (0, 2), "poisson": (0.01, 1e5), "salt_pepper": (0, 1), "blur": (0.1, 6),
               "inpaint_random": (0, 1)}
    if kind in ("inpaint_box", "downsample"):
        if level != int(level) or level < 1:
            raise ValueError(f"--level for {kind} must be a positive integer, got {level}")
    elif not domains[kind][0] < level <= domains[kind][1]:
        raise ValueError(f"--level for {kind} must be in ({domains[kind][0]}, {domains[kind][1]}], got {level}")
    return int(level) if kind in ("inpaint_box", "downsample") else float(level)


def main(argv):
    del argv
    f = flags.FLAGS
    kind = f.degradation
    if kind not in degrade.DEGRADATIONS:
        raise ValueError(f"unknown --degradation {kind!r}; choose one of {sorted(degrade.DEGRADATIONS)}")
    level = check_level(kind, degrade.DEFAULT_LEVELS[kind][0] if f.level is None else f.level)
    for name in f.methods or []:
        method = restore.get(name)
        if kind not in method.applies_to:
            raise ValueError(f"method {name!r} does not restore {kind!r}; it restores {method.applies_to}")
    clean = images.load_folder(f.folder)[: f.num] if f.folder else \
        data.load("mnist_sample", "test").images[:: max(1, 1000 // f.num)][: f.num].astype(np.float32) / 255
    degrade.check_images(clean)
    eps_fn, s, step, process = model_eps_fn(f.run, clean.shape[1:])
    names = f.methods or [n for n, m in restore.METHODS.items() if kind in m.applies_to and m.process == process]
    if not names:
        kinds = sorted({k for m in restore.METHODS.values() if m.process == process for k in m.applies_to})
        raise ValueError(f"no method restores {kind!r} with a {process} run; the {process} methods restore {kinds}")
    out = Path(f.out or Path(f.run) / "restore" / files.output_name(kind=kind, level=level, seed=f.seed))
    key = jax.random.PRNGKey(f.seed)
    obs = degrade.degrade(kind, level, jax.random.fold_in(key, 0), clean)
    with files.exclusive(out, remove_if_unused=True):   # one writer per output folder
        rows, records, arrays = [("clean", clean), ("degraded", images.display_size(obs.y, clean.shape))], [], {}
        for name in names:
            with generate.step_progress(f"{name}: {f.posterior_samples} draws of {len(clean)} images"):
                rec, sample, mean, std = run_method(name, eps_fn, s, jax.random.fold_in(key, 1), obs, clean,
                                                    f.posterior_samples)
            records.append(rec)
            rows += [(f"{name} sample", sample), (f"{name} mean of {f.posterior_samples}", mean),
                     (f"{name} std x4", np.clip(4 * std, 0, 1))]
            arrays.update({f"{name}_sample": data.to_uint8(sample * 2 - 1),
                           f"{name}_mean": data.to_uint8(mean * 2 - 1)})
            print(f"{name:8s} NFE {rec['nfe']:4d}  sample PSNR {rec['sample']['psnr']:.2f} "
                  f"SSIM {rec['sample']['ssim']:.3f}  mean PSNR {rec['mean']['psnr']:.2f} "
                  f"SSIM {rec['mean']['ssim']:.3f}  {rec['seconds_per_image']:.2f} s/image")
        images.save_labelled_rows(out / "grid.png", [(n, x * 2 - 1) for n, x in rows], ncols=min(f.num, 16))
        images.save_npz(out / "restore.npz", data.to_uint8(clean * 2 - 1), **arrays,
                        degraded=data.to_uint8(images.display_size(obs.y, clean.shape) * 2 - 1))
        files.write_text(out / "metrics.json", json.dumps({"degradation": kind, "level": level, "checkpoint_step": step,
                                                            "methods": records}, indent=1))
    print(f"-> {out}")


def console_main():
    cli.run(main)


if __name__ == "__main__":
    console_main()
