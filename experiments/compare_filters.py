"""Classical restorers against every degradation: python -m experiments.compare_filters.

Each method's parameters are tuned by grid search (best mean PSNR) on validation images from the train split,
separately for each degradation and level, then scored on the test images (`diffjax.compare`). Writes into --out
(default checkpoints/compare/<runs compared>_n<num>_seed<seed>): results.json, table.md (best method per
degradation), psnr_vs_level.png, ssim_vs_level.png, psnr_vs_edginess.png and examples/<degradation>_<level>.png.
`--run RUN` adds the conditioned samplers of a trained diffusion model (versus.md); `--pde_run DIR` adds the
trained learned-diffusion restorers of `experiments.train_pde` (learned.md: against tuned Perona-Malik and the
best classical method).
"""

from pathlib import Path

import numpy as np
from absl import flags

from diffjax import classical, compare, data, degrade, files, images, restore
from experiments import cli

flags.DEFINE_string("dataset", "mnist_sample", "mnist_sample (test split), or any dataset of diffjax.data")
flags.DEFINE_string("folder", None, "a folder of your own PNG images (all the same size), instead of --dataset")
flags.DEFINE_integer("num", 200, "test images scored per degradation", lower_bound=1)
flags.DEFINE_integer("num_val", 24, "validation images (train split) for tuning the parameters",
                     lower_bound=1)
flags.DEFINE_list("degradations", sorted(degrade.DEFAULT_LEVELS), "degradations to run")
flags.DEFINE_list("methods", classical.available(), "classical methods to run (default: every installed one)")
flags.DEFINE_string("out", None, "output directory (default: checkpoints/compare/<runs compared>_n<num>_seed<seed>)")
flags.DEFINE_integer("seed", 0, "seed of the degradations")
flags.DEFINE_string("run", None, "a trained run directory: add its conditioned samplers (diffjax.restore)")
flags.DEFINE_string("heat_run", None, "an IHDM run directory (configs/mnist_heat.py): add deblurring by inverse heat "
                    "dissipation")
flags.DEFINE_string("pde_run", None, "a directory of learned diffusion runs (python -m experiments.train_pde): add "
                    "every trained model as a row, e.g. learned_lambda, p1_n8")
flags.DEFINE_integer("posterior_samples", 8, "posterior samples averaged into each diffusion method's posterior mean",
                     lower_bound=1)
flags.DEFINE_list("diffusion_methods", ["ddnm"], "conditioned samplers to add with --run, or 'all' (every one "
                  "that applies; DPS costs about 3x the NFE in time)")
flags.DEFINE_integer("steps", 20, "reverse steps of each conditioned sampler", lower_bound=1)


def load_images(f):
    """(validation, test) float32 [N, H, W, C] in [0, 1]."""
    if f.folder:
        x = images.load_folder(f.folder)
        return x[: min(f.num_val, len(x) // 2)], x[min(f.num_val, len(x) // 2):][: f.num]
    val = data.load(f.dataset, "train").images
    test = data.load(f.dataset, "test").images
    pick = lambda a, n: a[np.linspace(0, len(a) - 1, min(n, len(a))).astype(int)].astype(np.float32) / 255  # noqa
    return pick(val, f.num_val), pick(test, f.num)


def main(argv):
    del argv
    f = flags.FLAGS
    for kind in f.degradations:
        if kind not in degrade.DEFAULT_LEVELS:
            raise ValueError(f"unknown degradation {kind!r}; choose from {sorted(degrade.DEFAULT_LEVELS)}")
    methods = [classical.get(name) for name in f.methods]
    gaussian_methods = [n for n, m in restore.METHODS.items() if m.process == "gaussian"]
    wanted = gaussian_methods if f.diffusion_methods == ["all"] else f.diffusion_methods
    if any(restore.get(name).process != "gaussian" for name in wanted):
        raise ValueError(f"--diffusion_methods {wanted}: choose from {gaussian_methods} (methods of a gaussian run)")
    val, test = load_images(f)
    degrade.check_images(val), degrade.check_images(test)
    models = {}
    for run_dir, flag, process, names in ((f.run, "run", "gaussian", wanted),
                                          (f.heat_run, "heat_run", "ihdm", ["ihdm"])):
        if run_dir:
            model = compare.model_eps_fn(run_dir, test.shape[1:])
            if model.process != process:
                raise ValueError(f"--{flag}={run_dir} is a {model.process} run, not a {process} one")
            models.update({name: model for name in names})
    tasks = compare.classical_tasks(f.degradations, methods) + \
        compare.diffusion_tasks(f.degradations, models, f.posterior_samples, f.steps) + \
        (compare.learned_tasks(f.degradations, f.pde_run) if f.pde_run else [])
    sources = [Path(r).name for r in (f.run, f.heat_run, f.pde_run) if r] or ["classical"]
    out = Path(f.out or Path("checkpoints") / "compare" / "_".join([*sources, f"n{f.num}", f"seed{f.seed}"]))
    with files.exclusive(out, remove_if_unused=True):
        print(compare.run(tasks, val, test, f.seed, out))
    print(f"-> {out}")


def console_main():
    cli.run(main)


if __name__ == "__main__":
    console_main()
