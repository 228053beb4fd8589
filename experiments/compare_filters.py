"""Classical restorers against every degradation: python -m experiments.compare_filters.

Each method's parameters are tuned by grid search (best mean PSNR) on validation images from the train split,
separately for each degradation and level, then scored on the test images (`diffjax.compare`). Writes into --out
(default checkpoints/compare/<runs compared>_n<num>_seed<seed>): results.json, table.md (best method per
degradation), psnr_vs_level.png, ssim_vs_level.png, psnr_vs_edginess.png and examples/<degradation>_<level>.png.
`--run RUN` adds the conditioned samplers of a trained diffusion model (versus.md); `--pde_run DIR` adds the
trained learned-diffusion restorers of `experiments.train_pde` (learned.md: against tuned Perona-Malik and the
best classical method).
"""

import json
from pathlib import Path

import numpy as np
from absl import flags
from tqdm.auto import tqdm

from diffjax import classical, data, degrade, files, images, metrics, restore
from diffjax.compare import (best_table, evaluate, evaluate_diffusion, evaluate_learned, learned_runs, learned_table,
                             model_eps_fn, plot_psnr_vs_edginess, plot_vs_level, task_key, versus_table)
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
    val, test = load_images(f)
    degrade.check_images(val), degrade.check_images(test)
    sources = [Path(r).name for r in (f.run, f.heat_run, f.pde_run) if r] or ["classical"]
    workdir = Path(f.out or Path("checkpoints") / "compare" / "_".join([*sources, f"n{f.num}", f"seed{f.seed}"]))
    tasks = [(k, lv, m) for k in f.degradations for lv in degrade.DEFAULT_LEVELS[k] for m in methods
             if k in m.applies_to]
    gaussian_methods = [n for n, m in restore.METHODS.items() if m.process == "gaussian"]
    wanted = gaussian_methods if f.diffusion_methods == ["all"] else f.diffusion_methods
    for name in wanted:
        if restore.get(name).process != "gaussian":
            raise ValueError(f"--diffusion_methods: {name!r} is not a method of a gaussian run; choose from "
                             f"{gaussian_methods}")
    models = {}
    for run_dir, process, names in ((f.run, "gaussian", wanted), (f.heat_run, "ihdm", ["ihdm"])):
        if run_dir:
            model = model_eps_fn(run_dir, test.shape[1:])
            if model.process != process:
                raise ValueError(f"--{'run' if process == 'gaussian' else 'heat_run'}={run_dir} is a "
                                 f"{model.process} run, not a {process} one")
            models.update({name: model for name in names})
    tasks += [(k, lv, name) for k in f.degradations for lv in degrade.DEFAULT_LEVELS[k]
              for name in models if k in restore.METHODS[name].applies_to]
    if f.pde_run:
        tasks += [(k, lv, run) for run in learned_runs(f.pde_run) for k in f.degradations
                  for lv in degrade.DEFAULT_LEVELS[k] if (run[1], run[2]) == (k, float(lv))]
    results, examples = [], {}
    for kind, level, method in tqdm(tasks, desc="methods x degradations"):
        if isinstance(method, tuple):
            r, x_hat, obs = evaluate_learned(kind, level, method[0], method[3], val, test,
                                             task_key(f.seed, kind, level))
            results.append(r)
            label = method[0]
        elif isinstance(method, str):
            rs, x_hat, obs = evaluate_diffusion(kind, level, method, val, test, task_key(f.seed, kind, level),
                                                models[method].eps_fn, models[method].s, f.posterior_samples,
                                                f.steps)
            results += rs
            label = f"{method} (sample)"
        else:
            r, x_hat, obs = evaluate(kind, level, method, val, test, task_key(f.seed, kind, level))
            results.append(r)
            label = method.name
        rows = examples.setdefault((kind, level), [("clean", test[:8]),
                                                   ("degraded", images.display_size(obs.y, test.shape))])
        if label != "degraded":     # the identity "method" is the degraded row already
            rows.append((label, x_hat[:8]))
    for (kind, level), rows in examples.items():
        images.save_labelled_rows(workdir / "examples" / f"{kind}_{level}.png", [(n, x * 2 - 1) for n, x in rows])
    files.write_text(workdir / "results.json", json.dumps(results, indent=1))
    table = best_table(results)
    files.write_text(workdir / "table.md", table)
    if models:
        versus = versus_table(results)
        files.write_text(workdir / "versus.md", versus)
        table += "\n" + versus
    if f.pde_run:
        learned = learned_table(results)
        files.write_text(workdir / "learned.md", learned)
        table += "\n" + learned
    plot_vs_level(results, "psnr", workdir / "psnr_vs_level.png")
    plot_vs_level(results, "ssim", workdir / "ssim_vs_level.png")
    plot_psnr_vs_edginess(results, np.asarray(metrics.edginess(test)), workdir / "psnr_vs_edginess.png")
    print(table)
    print(f"-> {workdir}")


def console_main():
    cli.run(main)


if __name__ == "__main__":
    console_main()
