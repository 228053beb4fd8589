"""Train learned anisotropic diffusion restorers (diffjax.learned_pde): python -m experiments.train_pde.

    python -m experiments.train_pde --degradations gaussian --levels 0.2 [--models lambda] [--cells 8]
    python -m experiments.train_pde --degradations all         # every model, kind and default level, and figures

Each run lives in OUT/<model>[_n<cells>]/<degradation>_<level>/ (config.json, metrics.jsonl with the
validation PSNR, verified Orbax checkpoints); running again resumes. `--degradations all` also trains the P1
model with every partition size of --sweep_cells on the Gaussian levels and writes OUT/figures/:
coefficients.png (the diffusivity maps next to the degraded digits, one row per degradation),
p1_functions.png, p1_cells_heatmap.png (validation PSNR over partition size x noise level) and
edginess_vs_level.png. Add the trained models to the comparison with
`python -m experiments.compare_filters --pde_run OUT`.
"""

import time
from pathlib import Path

import jax
import numpy as np
from absl import flags
from flax import nnx

from diffjax import degrade, files, learned_pde, metrics
from experiments import cli

flags.DEFINE_list("degradations", ["gaussian"], f"degradations, from {learned_pde.KINDS}, or 'all'")
flags.DEFINE_list("levels", None, "degradation levels (default: every default level of each degradation)")
flags.DEFINE_list("models", ["all"], f"models to train, from {learned_pde.MODELS}, or 'all'")
flags.DEFINE_integer("cells", 8, "partition size n of the P1 models", lower_bound=1)
flags.DEFINE_list("sweep_cells", ["4", "8", "16", "32"], "partition sizes of the P1 sweep (with --degradation all)")
flags.DEFINE_integer("train_steps", learned_pde.Config.train_steps, "Adam steps per model", lower_bound=1)
flags.DEFINE_integer("pde_steps", learned_pde.Config.pde_steps, "explicit steps K of the unrolled scheme",
                     lower_bound=1)
flags.DEFINE_float("lr", learned_pde.Config.lr, "peak learning rate (cosine decay)")
flags.DEFINE_integer("border_steps", 1500, "Adam steps of the shared border classifier", lower_bound=1)
flags.DEFINE_string("diffusivity", "rational", "g of the lambda models: rational or exponential")
flags.DEFINE_string("dataset", "mnist_sample", "training images (train split; every tenth digit is validation)")
flags.DEFINE_string("out", "checkpoints/pde", "output directory (run again to resume)")
flags.DEFINE_integer("seed", 0, "seed")
flags.DEFINE_bool("progress", True, "show progress bars")


def plan(f) -> list[learned_pde.Config]:
    """The configs the flags ask for, checked before any training starts."""
    kinds = learned_pde.KINDS if f.degradations == ["all"] else tuple(f.degradations)
    models = learned_pde.MODELS if f.models == ["all"] else tuple(f.models)
    try:
        asked = None if f.levels is None else [float(lv) for lv in f.levels]
    except ValueError:
        raise ValueError(f"--levels must be numbers, got {f.levels}") from None
    base = dict(pde_steps=f.pde_steps, train_steps=f.train_steps, lr=f.lr, seed=f.seed, dataset=f.dataset,
                diffusivity=f.diffusivity, cells=f.cells)
    cfgs = []
    for kind in kinds:
        if kind not in learned_pde.KINDS:
            raise ValueError(f"--degradations: learned diffusion does not restore {kind!r}; choose from "
                             f"{learned_pde.KINDS} or 'all'")
        levels = degrade.DEFAULT_LEVELS[kind] if asked is None else asked
        cfgs += [learned_pde.Config(model=m, kind=kind, level=float(lv), **base) for m in models for lv in levels]
    if f.degradations == ["all"]:
        cfgs += [learned_pde.Config(model="p1", kind="gaussian", level=float(lv), **{**base, "cells": int(n)})
                 for n in f.sweep_cells if int(n) != f.cells for lv in degrade.DEFAULT_LEVELS["gaussian"]]
    for cfg in cfgs:
        cfg.check()
    return cfgs


def final_psnr(root, cfg) -> float:
    path = learned_pde.run_dir(root, cfg) / "metrics.jsonl"
    records = files.read_jsonl(path, learned_pde.CONFIG_FIX, keys=("step", "val_psnr"))
    if not records:
        raise files.DamagedFileError(f"{path} is empty: {learned_pde.CONFIG_FIX}")
    return records[-1]["val_psnr"]


def _figure(path, draw, nrows, ncols, size=(2.0, 2.0)):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False,
                             layout="constrained")
    draw(fig, axes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figures(root: Path, cfgs, seed: int = 0) -> None:
    """The figures of the module docstring, from the trained runs of `cfgs`."""
    out = root / "figures"
    _, val_x = learned_pde._split(cfgs[0].dataset)
    key = jax.random.PRNGKey(seed)
    main = [c for c in cfgs if not (c.model.startswith("p1") and c.cells != cfgs[0].cells)]
    kinds = sorted({c.kind for c in main})
    models = [m for m in learned_pde.MODELS if any(c.model == m for c in main)]

    def middle(kind):
        levels = sorted({c.level for c in main if c.kind == kind})
        return levels[len(levels) // 2]

    def coefficients(fig, axes):
        for row, kind in zip(axes, kinds):
            x, obs = learned_pde._validation(kind, middle(kind), val_x, key, 1)
            row[0].imshow(np.asarray(obs.y[0, ..., 0]), cmap="gray", vmin=0, vmax=1)
            row[0].set_title(f"{kind} {middle(kind):g}", fontsize=8)
            for ax, model in zip(row[1:], models):
                cfg = next(c for c in main if (c.kind, c.level, c.model) == (kind, middle(kind), model))
                c = np.asarray(learned_pde.load(learned_pde.run_dir(root, cfg)).coefficients(obs)[0, ..., 0])
                im = ax.imshow(c, cmap="coolwarm", vmin=-1, vmax=1)
                ax.set_title(f"g: {model}", fontsize=8)
            for ax in row:
                ax.axis("off")
        fig.colorbar(im, ax=axes, shrink=0.5)

    _figure(out / "coefficients.png", coefficients, len(kinds), len(models) + 1)

    p1_runs = [c for c in main if c.model == "p1"]
    if p1_runs:
        def p1_functions(fig, axes):
            for ax, kind in zip(axes.flat, kinds):
                for cfg in (c for c in p1_runs if c.kind == kind):
                    r = learned_pde.load(learned_pde.run_dir(root, cfg))
                    v = np.asarray(nnx.merge(r.graphdef, r.params).values()[0])
                    ax.plot(np.linspace(0, 1, len(v)), v, marker="o", ms=3, label=f"level {cfg.level:g}")
                ax.axhline(0, color="k", lw=0.5)
                ax.set(title=kind, xlabel="|grad f| / max", ylabel="g")
                ax.legend(fontsize=7)
            for ax in axes.flat[len(kinds):]:
                ax.axis("off")

        _figure(out / "p1_functions.png", p1_functions, -(-len(kinds) // 3), 3, (3.6, 3.0))
    sweep = sorted({(c.cells, c.level) for c in cfgs if c.model == "p1" and c.kind == "gaussian"})
    cells, levels = sorted({s[0] for s in sweep}), sorted({s[1] for s in sweep})
    if len(cells) > 1:
        grid = np.array([[final_psnr(root, learned_pde.Config(model="p1", kind="gaussian", level=lv, cells=n))
                          for lv in levels] for n in cells])

        def heatmap(fig, axes):
            ax = axes[0, 0]
            im = ax.imshow(grid, cmap="viridis", aspect="auto")
            ax.set(xticks=range(len(levels)), xticklabels=[f"{lv:g}" for lv in levels], yticks=range(len(cells)),
                   yticklabels=cells, xlabel="Gaussian noise std", ylabel="P1 cells n",
                   title="validation PSNR (dB), best per level boxed")
            for i in range(len(cells)):
                for j in range(len(levels)):
                    best = i == int(np.argmax(grid[:, j]))
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="k" if best else "w", bbox=dict(fc="w", ec="k") if best else None)
            fig.colorbar(im, ax=ax)

        _figure(out / "p1_cells_heatmap.png", heatmap, 1, 1, (5.5, 3.8))

    def edginess(fig, axes):
        ax = axes[0, 0]
        x = learned_pde._unit(val_x[:200])
        for kind in kinds:
            levels = degrade.DEFAULT_LEVELS[kind]
            means = [float(np.mean(metrics.edginess(learned_pde.start(degrade.degrade(kind, lv, key, x))[0])))
                     for lv in levels]
            ax.plot(range(len(levels)), means, marker="o", label=kind)
            for i, (lv, m) in enumerate(zip(levels, means)):
                ax.annotate(f"{lv:g}", (i, m), fontsize=7)
        ax.axhline(float(np.mean(metrics.edginess(x))), color="k", ls="--", label="clean")
        ax.set(xlabel="level index (annotated: level)", ylabel="mean edginess of the degraded image", yscale="log")
        ax.legend(fontsize=7)

    _figure(out / "edginess_vs_level.png", edginess, 1, 1, (6.0, 4.2))


def main(argv):
    del argv
    f = flags.FLAGS
    cfgs = plan(f)
    root = Path(f.out)
    summary = []
    for i, cfg in enumerate(cfgs):
        tic = time.perf_counter()
        learned_pde.train(root, cfg, progress=f.progress, border_steps=f.border_steps)
        summary.append({"run": str(learned_pde.run_dir(root, cfg)), "val_psnr": final_psnr(root, cfg),
                        "seconds": time.perf_counter() - tic})
        print(f"[{i + 1}/{len(cfgs)}] {summary[-1]['run']}: validation PSNR {summary[-1]['val_psnr']:.2f} dB "
              f"({summary[-1]['seconds']:.0f} s)", flush=True)
    if f.degradations == ["all"]:
        figures(root, cfgs, f.seed)
        print(f"figures in {root / 'figures'}")


def console_main():
    cli.run(main)


if __name__ == "__main__":
    console_main()
