"""Training: the train state, one jitted data-parallel step, EMA, and the loop.

The step is a pure function of (state, dataset) under `jax.jit`: it draws its batch
indices, flips, timesteps and noise from fold_in(state.key, state.step), so a run is a
function of its seed and a resumed run continues exactly as an uninterrupted one.
The batch is sharded over the mesh's `data` axis, parameters are replicated, and XLA
inserts the gradient all-reduce.
"""

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from diffjax import (checkpoint, config_check, data, digit_score, files, generate, images, parallel,
                     preemption, processes)
from diffjax.nn.unet import UNet, init_unet, param_count


class TrainState(NamedTuple):
    step: jax.Array        # int32 []
    params: Any            # nnx.State of the UNet
    ema_params: Any
    opt_state: Any
    key: jax.Array         # uint32 [2], the run's training key


RUN_CONFIG_FIX = "restore it from a copy of the run, or train again in a new --out"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf."""


def make_model(cfg, key) -> UNet:
    """The config's UNet initialised from `key` (key=None: the abstract UNet, shapes only)."""
    m = cfg.model
    return init_unet(key, image_size=cfg.data.image_size, in_channels=cfg.data.channels, ch=m.ch,
                     ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
                     attn_resolutions=tuple(m.attn_resolutions), attn_middle=m.attn_middle, dropout=m.dropout,
                     groups=m.groups, num_classes=m.num_classes, dtype=jnp.dtype(m.dtype))


def learning_rate(cfg) -> optax.Schedule:
    """Linear warm-up to `optim.lr`, then constant (Ho et al. 2020, App. B) or, with `optim.decay = "cosine"`,
    lr_k = lr (1 + cos(pi (k - w) / (K - w))) / 2 down to 0 at the last step K (Loshchilov & Hutter 2017).
    Run directories written before `optim.decay` existed are constant."""
    o, warmup = cfg.optim, max(cfg.optim.warmup_steps, 1)
    if o.get("decay", "constant") == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, o.lr, warmup, max(cfg.train.steps, warmup + 1), 0.0)
    return optax.join_schedules([optax.linear_schedule(0.0, o.lr, warmup), optax.constant_schedule(o.lr)],
                                [warmup])


def make_optimizer(cfg) -> optax.GradientTransformation:
    """Gradient clipping, then AdamW at the rate of `learning_rate(cfg)`."""
    o = cfg.optim
    lr = learning_rate(cfg)
    return optax.chain(optax.clip_by_global_norm(o.grad_clip),
                       optax.adamw(lr, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay))


def init_state(cfg, mesh):
    """Builds the model and a replicated train state. Returns (graphdef, state, sample_key)."""
    init_key, train_key, sample_key = jax.random.split(jax.random.PRNGKey(cfg.seed), 3)
    graphdef, params = nnx.split(make_model(cfg, init_key))
    state = TrainState(jnp.int32(0), params, params, make_optimizer(cfg).init(params), train_key)
    return graphdef, jax.device_put(state, parallel.replicated(mesh)), sample_key


def abstract_state(cfg):
    """(graphdef, TrainState of `jax.ShapeDtypeStruct`s): the shapes to restore a checkpoint into."""
    model = make_model(cfg, None)
    graphdef, params = nnx.split(model)
    opt_state = jax.eval_shape(make_optimizer(cfg).init, params)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    return graphdef, TrainState(jax.ShapeDtypeStruct((), jnp.int32), params, params, opt_state, key)


def load_config(workdir) -> ml_collections.ConfigDict:
    """The resolved config a run directory was trained with."""
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise checkpoint.CheckpointError(f"{workdir} is not a run directory (no config.json): train there first "
                                         f"with python -m experiments.train_ddpm --out {workdir}")
    return ml_collections.ConfigDict(files.read_json(path, RUN_CONFIG_FIX))


def restore_ema(workdir, mesh=None):
    """Restores a run's EMA parameters (and reads nothing else of the train state). Returns (cfg, graphdef,
    ema_params, step)."""
    cfg = load_config(workdir)
    graphdef, abstract = abstract_state(cfg)
    mesh = mesh or parallel.make_mesh()
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=parallel.replicated(mesh)),
                            {"ema_params": abstract.ema_params, "step": abstract.step})
    mngr = checkpoint.manager(workdir, create=False)
    try:
        state = checkpoint.restore(mngr, abstract)
    finally:
        mngr.close()
    return cfg, graphdef, state["ema_params"], int(state["step"])


def make_train_step(graphdef, cfg, mesh):
    """The jitted step: (state, images uint8 [N,H,W,C], labels int32 [N]) -> (state, metrics)."""
    p, tx = processes.make(cfg), make_optimizer(cfg)
    batch, decay = cfg.train.batch_size, cfg.optim.ema_decay
    parallel.check_divisible(batch, mesh)
    on_data = parallel.batch_sharded(mesh)
    num_classes, p_uncond = cfg.model.num_classes, cfg.train.get("p_uncond", 0.0)

    def step(state: TrainState, images_u8, labels):
        k_idx, k_flip, k_loss, k_drop, k_uncond = jax.random.split(jax.random.fold_in(state.key, state.step), 5)
        idx = jax.lax.with_sharding_constraint(jax.random.randint(k_idx, (batch,), 0, images_u8.shape[0]), on_data)
        x0 = data.to_float(images_u8[idx])                                    # [B, H, W, C]
        if cfg.data.random_flip:
            flip = jax.random.bernoulli(k_flip, 0.5, (batch, 1, 1, 1))
            x0 = jnp.where(flip, x0[:, :, ::-1], x0)
        y = None
        if num_classes:
            y = jnp.where(jax.random.bernoulli(k_uncond, p_uncond, (batch,)), num_classes, labels[idx])

        def loss_fn(params):
            model = nnx.merge(graphdef, params)
            net = lambda x_t, t: model(x_t, t, y, train=True, rngs=nnx.Rngs(dropout=k_drop))  # noqa: E731
            return processes.loss(cfg, p, net, x0, k_loss)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
        new = TrainState(state.step + 1, params, ema, opt_state, state.key)
        return new, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return jax.jit(step)


def _check_same_run(workdir: Path, cfg) -> None:
    """Refuses a run directory trained with a different model, data, diffusion or seed."""
    path = workdir / "config.json"
    if path.exists():
        old, new = files.read_json(path, RUN_CONFIG_FIX), json.loads(cfg.to_json_best_effort())
        changed = [k for k in ("data", "model", "diffusion", "seed") if old.get(k) != new.get(k)]
        if changed:
            raise ValueError(f"{workdir} holds a run with a different {', '.join(changed)} config; "
                             f"use a new --out or the same config")


def _read_log(path: Path) -> list[dict]:
    """The records of a run's metrics.jsonl or scores.jsonl ([] if it has none yet)."""
    if not path.exists():
        return []
    return files.read_jsonl(path, "delete it to resume without the log so far, or start a new --out")


def _up_to(records: list[dict], step: int) -> list[str]:
    """The records of steps <= `step` as JSON lines (later ones were logged by a run that stopped before its next
    checkpoint, and are trained again)."""
    return [json.dumps(r) for r in records if r["step"] <= step]


def default_samples(graphdef, params, cfg, key, num: int, mesh, prior=None, progress: bool = False) -> np.ndarray:
    """`num` samples from `params` with the process's default sampler (`sample_steps`, `sample_eta` where
    they apply; `prior`: the IHDM prior), in [-1, 1]."""
    shape = (cfg.data.image_size, cfg.data.image_size, cfg.data.channels)
    return generate.sample(graphdef, params, processes.make(cfg), key, num, shape, mesh=mesh,
                           sampler=processes.sampler_for(cfg, cfg.train.get("sample_sampler") or None),
                           steps=cfg.train.sample_steps,
                           eta=processes.sampling_eta(cfg, cfg.train.sample_eta),
                           prediction=processes.prediction(cfg), prior=prior, progress=progress)


def run(cfg: ml_collections.ConfigDict, workdir, mesh=None, progress: bool = True) -> TrainState:
    """Trains (or resumes) to `cfg.train.steps` in `workdir`; returns the final state.

    The config, the data and the compiled step are checked first: a bad value is one ValueError and
    leaves no run directory behind. Then writes config.json, metrics.jsonl, samples/step_*.png, Orbax
    checkpoints and, every `train.eval_every` steps if > 0, the sample score (`digit_score`: FD of
    `train.eval_num` samples against the test digits) to scores.jsonl. The host keeps one step queued and
    waits for the one before it, so the progress bar counts finished steps; it reads values only at log,
    sample and checkpoint steps; there every loss since the last sync is checked, and a non-finite one raises
    `NonFiniteLossError` before anything of that stretch is saved (the last good checkpoint is kept).
    A checkpoint is written every `train.ckpt_every` steps and every `train.ckpt_minutes` of wall clock (the
    numbers do not depend on when). The run holds the directory's lock (`files.exclusive`) throughout; SIGTERM
    and Ctrl-C save the current step, then raise `preemption.Interrupted` (`preemption.StopRequest`).
    """
    workdir = Path(workdir)
    mesh = mesh or parallel.make_mesh()
    config_check.check(cfg, mesh.shape[parallel.DATA])
    with files.exclusive(workdir, remove_if_unused=True):   # one writer per run directory, for the whole run
        _check_same_run(workdir, cfg)
        metrics_log, scores_log = _read_log(workdir / "metrics.jsonl"), _read_log(workdir / "scores.jsonl")
        ds = data.from_config(cfg, "train")
        if ds.images.shape[1:] != (cfg.data.image_size, cfg.data.image_size, cfg.data.channels):
            raise ValueError(f"dataset {ds.name} has images {ds.images.shape[1:]}, config expects "
                             f"{(cfg.data.image_size, cfg.data.image_size, cfg.data.channels)}")
        graphdef, state, sample_key = init_state(cfg, mesh)
        ds_images, ds_labels = data.device_put(ds, parallel.replicated(mesh))
        if progress:
            print(f"compiling the train step ({ds.name}, batch {cfg.train.batch_size}) ...", file=sys.stderr,
                  flush=True)
        step_fn = make_train_step(graphdef, cfg, mesh).lower(state, ds_images, ds_labels).compile()
        with preemption.StopRequest() as stop:   # SIGTERM and SIGINT: save, then stop
            return _train_loop(cfg, workdir, mesh, progress, ds, graphdef, state, sample_key, step_fn, ds_images,
                               ds_labels, metrics_log, scores_log, stop)


def _train_loop(cfg, workdir, mesh, progress, ds, graphdef, state, sample_key, step_fn, ds_images, ds_labels,
                metrics_log, scores_log, stop):
    """The loop of `run`, inside the run directory's lock."""
    metrics_path, scores_path = workdir / "metrics.jsonl", workdir / "scores.jsonl"
    files.write_text(workdir / "config.json", json.dumps(json.loads(cfg.to_json_best_effort()), indent=2))
    prior = None
    if processes.name(cfg) == "ihdm":
        prior = processes.write_prior(cfg, ds.images, workdir / processes.PRIOR_FILE)
    mngr = checkpoint.manager(workdir)
    if checkpoint.steps(mngr):
        state = TrainState(**checkpoint.restore(mngr, state._asdict()))
        mngr.close()
        checkpoint.set_aside_after(mngr, int(state.step))
        mngr = checkpoint.manager(workdir)
    start = step = last_saved = int(state.step)
    logged, scored = _up_to(metrics_log, start), _up_to(scores_log, start)
    t = cfg.train
    eval_every = t.get("eval_every", 0)
    ckpt_seconds = 60.0 * t.get("ckpt_minutes", 0.0) or float("inf")
    if eval_every:
        test_ds = data.from_config(cfg, "test")
        classifier = digit_score.load_or_train(digit_score.DEFAULT_CACHE, ds, test_ds)
    pending = []       # (step, device metrics) since the last host sync

    def sync():
        """Host sync: every pending loss finite, else NonFiniteLossError. Returns the newest metrics."""
        losses = np.asarray(jax.device_get([m["loss"] for _, m in pending]))
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            raise NonFiniteLossError(
                f"loss is {losses[bad[0]]} at step {pending[bad[0]][0]}; the last good checkpoint (step "
                f"{last_saved}) is kept in {workdir}; lower --config.optim.lr or check the data, then run again")
        newest = {k: float(v) for k, v in pending[-1][1].items()}
        pending.clear()
        return newest

    def draw_grid(step):
        images.save_grid(workdir / "samples" / f"step_{step:07d}.png",
                         default_samples(graphdef, state.ema_params, cfg, jax.random.fold_in(sample_key, step),
                                         t.num_sample_images, mesh, prior, progress))

    bar = tqdm(total=t.steps, initial=start, unit="step", disable=not progress, dynamic_ncols=True,
               desc=f"train {ds.name} ({param_count(nnx.merge(graphdef, state.params)) / 1e6:.2f}M params)")
    try:
        tic = saved_at = time.perf_counter()
        while step < t.steps:
            state, m = step_fn(state, ds_images, ds_labels)
            step += 1
            if pending:   # the bar counts finished steps: wait for the previous one while this one is queued
                pending[-1][1]["loss"].block_until_ready()
                bar.update(1)
            pending.append((step, m))
            log_now, sample_now = step % t.log_every == 0, step % t.sample_every == 0
            stopping = stop.due(step)
            # by wall clock too (same numbers), and before every grid: a SIGTERM while one is drawn loses nothing
            ckpt_now = (step % t.ckpt_every == 0 or step == t.steps or stopping or sample_now
                        or time.perf_counter() - saved_at >= ckpt_seconds)
            if not (log_now or sample_now or ckpt_now):
                continue
            m = sync()
            bar.update(1)
            bar.set_postfix(loss=f"{m['loss']:.4g}")
            if log_now or step == t.steps:
                now = time.perf_counter()
                logged.append(json.dumps({"step": step, "loss": m["loss"], "grad_norm": m["grad_norm"],
                                          "steps_per_sec": t.log_every / (now - tic)}))
                files.write_text(metrics_path, "".join(ln + "\n" for ln in logged))   # atomic
                tic = now
            if ckpt_now and logged:
                images.save_loss_curve(workdir / "metrics.png", [json.loads(ln) for ln in logged])
            if eval_every and step % eval_every == 0 and not stopping:
                eval_key = jax.random.fold_in(jax.random.fold_in(sample_key, step), 1)
                x = default_samples(graphdef, state.ema_params, cfg, eval_key, t.eval_num, mesh, prior)
                scored.append(json.dumps({"step": step, "num": t.eval_num,
                                          **digit_score.score(classifier, data.to_uint8(x), test_ds.images)}))
                files.write_text(scores_path, "".join(ln + "\n" for ln in scored))
            if ckpt_now:
                stop.saving = True
                checkpoint.save(mngr, step, state._asdict())
                stop.saving, last_saved, saved_at = False, step, time.perf_counter()
            if (sample_now or step == t.steps) and not stopping:
                draw_grid(step)
            if stopping:
                name = signal.Signals(stop.signum).name
                raise preemption.Interrupted(f"{name}: checkpoint of step {step} saved in {workdir}; run the same "
                                             f"command again to resume", stop.signum)
        if not (workdir / "samples" / f"step_{t.steps:07d}.png").exists():   # stopped while drawing the last grid
            draw_grid(t.steps)
    except preemption.Interrupted:
        raise
    except KeyboardInterrupt:   # a second signal: stop at once
        raise preemption.Interrupted(f"interrupted: the last checkpoint (step {last_saved}) is in {workdir}; run the "
                                     f"same command again to resume from it", signal.SIGINT) from None
    finally:
        bar.close()
        mngr.close()
    return state
