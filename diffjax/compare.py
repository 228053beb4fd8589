"""The comparison protocol of restorers: classical methods tuned by grid search, a trained run's conditioned
samplers, learned-diffusion runs; each scored by PSNR/SSIM on test images, then tables and plots.

Each method's parameters are tuned by grid search (best mean PSNR) on validation images from the train split,
separately for each degradation and level (the grid grows past its edges, `tuning.tune`), then scored on the
test images, with noise independent of the validation noise. Keys come from stable values (`task_key`), so the
same seed gives the same table in any process.
"""

import json
import time
import zlib
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from tqdm.auto import tqdm

from diffjax import (classical, degrade, files, generate, images, learned_pde, metrics, processes, restore, train,
                     tuning)


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


def _se(a) -> float:
    return float(np.std(a, ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0


def _observe(kind, level, key, val, test):
    """The degraded validation and test images of one task (independent noise)."""
    k_val, k_test = jax.random.split(key)
    return degrade.degrade(kind, level, k_val, val), degrade.degrade(kind, level, k_test, test)


def _tune(score, grid):
    """tuning.tune, timed. Returns (best params, info with the tuning's wall seconds)."""
    tic = time.perf_counter()
    best, _, info = tuning.tune(score, grid)
    return best, {**info, "seconds": time.perf_counter() - tic}


def _row(kind, level, method, params, info, psnr, ssim, seconds_per_image, **extra) -> dict:
    """One results.json row: per-image PSNR/SSIM summarised as mean and standard error."""
    psnr, ssim = np.asarray(psnr), np.asarray(ssim)
    return {"degradation": kind, "level": level, "method": method, "params": params,
            "at_bound": info["at_bound"], "evaluations": info["evaluations"], **extra,
            "psnr": float(psnr.mean()), "psnr_se": _se(psnr), "ssim": float(ssim.mean()), "ssim_se": _se(ssim),
            "seconds_per_image": seconds_per_image, "tuning_seconds": info["seconds"],
            "psnr_per_image": psnr.tolist()}


def evaluate(kind, level, method, val, test, key):
    """Tunes `method` on val (the grid grows past its edges), scores on test.

    Returns (result dict, restored test images, test observation)."""
    obs_val, obs_test = _observe(kind, level, key, val, test)
    score = lambda p: float(np.mean(metrics.psnr(classical.restore(method.name, obs_val, **p), val)))  # noqa: E731
    best, info = _tune(score, method.grid)
    tic = time.perf_counter()
    x_hat = np.asarray(classical.restore(method.name, obs_test, **best))
    seconds = (time.perf_counter() - tic) / len(test)
    return _row(kind, level, method.name, best, info, metrics.psnr(x_hat, test), metrics.ssim(x_hat, test),
                seconds), x_hat, obs_test


def task_key(seed: int, kind: str, level) -> jax.Array:
    """The key of one (degradation, level): from stable values only (a CRC of the name, not `hash`,
    which Python randomises per process), so the same --seed gives the same table in any process."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(kind.encode()) % 2**31)
    return jax.random.fold_in(key, int(round(float(level) * 1000)))


def evaluate_diffusion(kind, level, name, val, test, key, eps_fn, s, num_samples, steps):
    """Tunes a conditioned sampler on val (PSNR of one sample), then scores one sample and the posterior
    mean of `num_samples` on test. Returns ([sample row, mean row], sample images, observation)."""
    obs_val, obs_test = _observe(kind, level, key, val, test)
    k_val, k_test = jax.random.split(key)
    fixed = {"steps": steps} if restore.get(name).process == "gaussian" else {}   # IHDM runs from its level down
    score = lambda p: float(np.mean(metrics.psnr(  # noqa: E731
        restore.restore(name, eps_fn, s, jax.random.fold_in(k_val, 7), obs_val, image_shape=val.shape, **fixed,
                        **p), val)))
    best, info = _tune(score, restore.tuning_grid(name, obs_val))
    rec, sample, _, _ = run_method(name, eps_fn, s, jax.random.fold_in(k_test, 7), obs_test, test, num_samples,
                                   **fixed, **best)
    rows = [_row(kind, level, label, {**best, **fixed}, info, rec[tag]["psnr_per_image"],
                 rec[tag]["ssim_per_image"], rec["seconds_per_image"], nfe=rec["nfe"])
            for tag, label in (("sample", f"{name} (sample)"), ("mean", f"{name} (mean of {num_samples})"))]
    return rows, sample, obs_test


def learned_runs(root) -> list[tuple[str, str, float, Path]]:
    """(row name, degradation, level, run directory) of every trained learned-diffusion run under root."""
    runs = []
    for cfg_path in sorted(Path(root).glob("*/*/config.json")):
        model_dir = cfg_path.parent.parent.name
        if model_dir != "border":
            cfg = files.read_json(cfg_path, learned_pde.CONFIG_FIX)
            runs.append((("learned_" if cfg["model"].startswith("lambda") else "") + model_dir, cfg["kind"],
                         float(cfg["level"]), cfg_path.parent))
    if not runs:
        raise ValueError(f"--pde={root} holds no learned diffusion runs: train them with "
                         f"python -m experiments.train_pde --out {root}")
    return runs


def evaluate_learned(kind, level, name, path, val, test, key):
    """Scores a trained learned-diffusion restorer on the test observation (nothing to tune)."""
    _, obs_test = _observe(kind, level, key, val, test)
    restorer = learned_pde.load(path)
    restorer.restore(obs_test)  # compiles outside the timing
    tic = time.perf_counter()
    x_hat = np.asarray(restorer.restore(obs_test))
    seconds = (time.perf_counter() - tic) / len(test)
    info = {"at_bound": [], "evaluations": 0, "seconds": 0.0}
    return _row(kind, level, name, {"run": str(path)}, info, metrics.psnr(x_hat, test), metrics.ssim(x_hat, test),
                seconds, learned=True), x_hat, obs_test


def _fmt(r) -> str:
    return f"{r['psnr']:.2f} ± {r['psnr_se']:.2f} | {r['ssim']:.3f} ± {r['ssim_se']:.3f}"


def _by_level(results):
    """(kind, level, rows of that task sorted by decreasing PSNR), in order of kind and level."""
    for kind, level in sorted({(r["degradation"], r["level"]) for r in results}):
        yield kind, level, sorted((r for r in results if (r["degradation"], r["level"]) == (kind, level)),
                                  key=lambda r: -r["psnr"])


def best_table(results) -> str:
    """Per degradation and level: the best method and the runner-up by mean PSNR (± standard error)."""
    rows = ["| degradation | level | best method | PSNR (dB) | SSIM | parameters | runner-up | PSNR (dB) | SSIM |",
            "|---|---|---|---|---|---|---|---|---|"]
    for kind, level, group in _by_level(results):
        b = group[0]
        second = f"{group[1]['method']} | {_fmt(group[1])}" if len(group) > 1 else "– | – | –"
        rows.append(f"| {kind} | {level} | {b['method']} | {_fmt(b)} | {json.dumps(b['params'])} | {second} |")
    return "\n".join(rows) + "\n"


def versus_table(results) -> str:
    """Per degradation and level: the best classical row against the best diffusion row (PSNR, SSIM), and the
    PSNR margin with the standard error of the paired per-image differences (both scored on the same images)."""
    rows = ["| degradation | level | best classical | PSNR (dB) | SSIM | best diffusion (NFE per sample) | PSNR (dB) | "
            "SSIM | PSNR margin (dB, paired) |", "|---|---|---|---|---|---|---|---|---|"]
    for kind, level, group in _by_level(results):
        c = next((r for r in group if "nfe" not in r and not r.get("learned")), None)
        d = next((r for r in group if "nfe" in r), None)
        if c and d:
            margin = np.subtract(d["psnr_per_image"], c["psnr_per_image"])
            rows.append(f"| {kind} | {level} | {c['method']} | {_fmt(c)} | {d['method']} ({d['nfe']}) | {_fmt(d)} | "
                        f"{d['psnr'] - c['psnr']:+.2f} ± {_se(margin):.2f} |")
    return "\n".join(rows) + "\n"


def learned_table(results) -> str:
    """Per degradation and level: the best learned diffusion against the tuned classical Perona-Malik (where it
    applies: the noise kinds) and the best classical method, with its PSNR margins (paired standard errors: all
    rows are scored on the same test images)."""
    rows = ["| degradation | level | best learned | PSNR (dB) | SSIM | Perona-Malik (tuned) | PSNR (dB) | "
            "margin over it (dB) | best classical | PSNR (dB) | margin over it (dB) |", "|---" * 11 + "|"]
    for kind, level, group in _by_level(results):
        learned = next((r for r in group if r.get("learned")), None)
        pm = next((r for r in group if r["method"].startswith("perona_malik")), None)
        best = next((r for r in group if "nfe" not in r and not r.get("learned")), None)
        if learned is None:
            continue
        cells = [f"| {kind} | {level} | {learned['method']} | {_fmt(learned)} |"]
        for other in (pm, best):
            if other is None:
                cells.append(" – | – | – |")
            else:
                margin = np.subtract(learned["psnr_per_image"], other["psnr_per_image"])
                cells.append(f" {other['method']} | {other['psnr']:.2f} ± {other['psnr_se']:.2f} | "
                             f"{learned['psnr'] - other['psnr']:+.2f} ± {_se(margin):.2f} |")
        rows.append("".join(cells))
    return "\n".join(rows) + "\n"


def _panels(results, path, draw) -> None:
    """One panel per degradation (4 per row), each drawn by draw(ax, kind, style); a shared method style."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({r["degradation"] for r in results})
    names = sorted({r["method"] for r in results})
    colors, markers = plt.get_cmap("tab20").colors, "osv^DPX*h<>p"
    style = {n: dict(color=colors[i % 20], marker=markers[i % len(markers)]) for i, n in enumerate(names)}
    ncols = min(4, len(kinds))
    nrows = -(-len(kinds) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(kinds):]:
        ax.axis("off")
    for ax, kind in zip(axes.flat, kinds):
        draw(ax, kind, style)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_vs_level(results, key, path) -> None:
    """Mean `key` (psnr or ssim) with standard errors against the degradation level, per method."""

    def draw(ax, kind, style):
        group = [r for r in results if r["degradation"] == kind]
        for name in sorted({r["method"] for r in group}):
            rs = sorted((r for r in group if r["method"] == name), key=lambda r: r["level"])
            ax.errorbar([r["level"] for r in rs], [r[key] for r in rs], yerr=[r[key + "_se"] for r in rs],
                        ms=4, capsize=2, label=name, **style[name])
        ax.set(title=kind, xlabel="level", ylabel=key.upper())

    _panels(results, path, draw)


def plot_psnr_vs_edginess(results, edginess, path) -> None:
    """Per-image PSNR against the clean image's edginess, at each degradation's first level."""

    def draw(ax, kind, style):
        first = min(r["level"] for r in results if r["degradation"] == kind)
        for r in (r for r in results if r["degradation"] == kind and r["level"] == first):
            ax.scatter(edginess, r["psnr_per_image"], s=6, alpha=0.5, label=r["method"], **style[r["method"]])
        ax.set(title=f"{kind} {first}", xlabel="edginess of the clean image", ylabel="PSNR (dB)")

    _panels(results, path, draw)


class Task(NamedTuple):
    """One row group of the comparison: a method at one degradation and level. `run(val, test, key)` returns
    (result rows, restored test images, the test observation); `label` names its row in the example grids."""

    kind: str
    level: float
    label: str
    run: Callable


def _levels(kinds):
    return [(k, lv) for k in kinds for lv in degrade.DEFAULT_LEVELS[k]]


def classical_tasks(kinds, methods) -> list[Task]:
    """Every classical method at every level of the kinds it applies to."""
    return [Task(k, lv, m.name, lambda val, test, key, k=k, lv=lv, m=m: _one(evaluate(k, lv, m, val, test, key)))
            for k, lv in _levels(kinds) for m in methods if k in m.applies_to]


def diffusion_tasks(kinds, models: dict, posterior_samples: int, steps: int) -> list[Task]:
    """Every conditioned sampler of `models` (name -> Model) at every level it restores."""
    return [Task(k, lv, f"{name} (sample)", lambda val, test, key, k=k, lv=lv, name=name, m=m: evaluate_diffusion(
                k, lv, name, val, test, key, m.eps_fn, m.s, posterior_samples, steps))
            for k, lv in _levels(kinds) for name, m in models.items() if k in restore.METHODS[name].applies_to]


def learned_tasks(kinds, root) -> list[Task]:
    """Every trained learned-diffusion run under `root`, at the level it was trained for."""
    return [Task(k, lv, name, lambda val, test, key, k=k, lv=lv, name=name, path=path: _one(
                evaluate_learned(k, lv, name, path, val, test, key)))
            for name, kind, level, path in learned_runs(root) for k, lv in _levels(kinds)
            if (kind, level) == (k, float(lv))]


def _one(result):
    row, x_hat, obs = result
    return [row], x_hat, obs


def run(tasks: list[Task], val, test, seed: int, out, progress: bool = True) -> str:
    """Runs every task on its own key (`task_key`), writes results.json, table.md (and versus.md where diffusion
    rows are, learned.md where learned ones are), the plots and example grids into `out`; returns the tables."""
    out = Path(out)
    results, examples = [], {}
    for task in tqdm(tasks, desc="methods x levels", unit="level", disable=not progress, dynamic_ncols=True):
        rows, x_hat, obs = task.run(val, test, task_key(seed, task.kind, task.level))
        results += rows
        grid = examples.setdefault((task.kind, task.level), [("clean", test[:8]),
                                                             ("degraded", images.display_size(obs.y, test.shape))])
        if task.label != "degraded":     # the identity "method" is the degraded row already
            grid.append((task.label, x_hat[:8]))
    for (kind, level), grid in examples.items():
        images.save_labelled_rows(out / "examples" / f"{kind}_{level}.png", [(n, x * 2 - 1) for n, x in grid])
    files.write_text(out / "results.json", json.dumps(results, indent=1))
    tables = {"table.md": best_table(results)}
    if any("nfe" in r for r in results):
        tables["versus.md"] = versus_table(results)
    if any(r.get("learned") for r in results):
        tables["learned.md"] = learned_table(results)
    for name, text in tables.items():
        files.write_text(out / name, text)
    plot_vs_level(results, "psnr", out / "psnr_vs_level.png")
    plot_vs_level(results, "ssim", out / "ssim_vs_level.png")
    plot_psnr_vs_edginess(results, np.asarray(metrics.edginess(test)), out / "psnr_vs_edginess.png")
    return "\n".join(tables.values())
