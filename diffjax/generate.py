"""Images from a trained UNet: the model's eps_fn handed to a sampler, in device-sharded batches."""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from diffjax import gaussian, parallel, samplers


@functools.lru_cache(maxsize=None)
def _apply(graphdef, prediction: str, guided: bool):
    def eps(params, s, y, w, x_t, t):
        model = nnx.merge(graphdef, params)
        if guided:  # the conditional and the unconditional (null label) prediction in one batch of 2B
            null = jnp.full_like(y, model.num_classes)
            out = model(jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]), jnp.concatenate([y, null]))
            cond, uncond = jnp.split(gaussian.eps_from_prediction(s, prediction, jnp.concatenate([x_t, x_t]),
                                                                  jnp.concatenate([t, t]), out), 2)
            return (1.0 + w) * cond - w * uncond
        return gaussian.eps_from_prediction(s, prediction, x_t, t, model(x_t, t, y))

    return eps


def eps_fn(graphdef, params, s, prediction: str = "eps", labels=None, guidance: float = 0.0) -> jax.tree_util.Partial:
    """eps_theta(x_t, t) as a pytree `Partial`: params are traced as jit arguments, not constants.
    `s`: the process object (a `Schedule` where `prediction` is x0 or v).

    `labels` ([B] int, or None = the null label) condition a class-conditional model; with `guidance` w > 0,
    classifier-free guidance (Ho & Salimans 2022, Eq. 6): eps = (1 + w) eps(x_t, t, y) - w eps(x_t, t, null).
    """
    guided = labels is not None and guidance > 0
    return jax.tree_util.Partial(_apply(graphdef, prediction, guided), params, s, labels, jnp.float32(guidance))


def class_labels(classes: int, label: int | None, guidance: float, num: int):
    """(labels [num] or None, grid columns or None): `label` for every image, or, for a class-conditional run
    with no label, the classes in turn, one grid row per class. Bad combinations are one ValueError."""
    if not classes:
        if label is not None or guidance:
            raise ValueError("--label and --guidance need a class-conditional run; this one has no classes "
                             "(train one with --config experiments/configs/mnist_cond.py)")
        return None, None
    if label is not None and label >= classes:
        raise ValueError(f"--label={label}: this run has classes 0..{classes - 1}")
    if label is not None:
        return np.full(num, label), None
    per_class = -(-num // classes)
    return np.repeat(np.arange(classes), per_class)[:num], per_class


@contextlib.contextmanager
def step_progress(desc: str, enabled: bool = True):
    """A progress bar over the steps of each sampler call made inside the block (a new call starts it again)."""
    if not enabled:
        yield
        return
    with tqdm(desc=desc, unit="step", dynamic_ncols=True) as bar:
        def on_step(i, n):
            if bar.total != n or i + 1 < bar.n:
                bar.reset(total=n)
            bar.update(i + 1 - bar.n)

        with samplers.reporting(on_step):
            yield


def sample(graphdef, params, s, key, num: int, image_shape, *, mesh=None, sampler: str = "ddim",
           steps: int = 50, eta: float = 0.0, batch_size: int = 256, prediction: str = "eps",
           num_frames: int = 0, progress: bool = False, prior=None, variance: str = "fixed_small", labels=None,
           guidance: float = 0.0):
    """Draws `num` images in batches of `batch_size`, each batch sharded over the mesh's `data` axis.

    `s` is the process object (`processes.make`); `steps` applies to every sampler but DDPM and IHDM (which
    take all their steps), `eta` to DDIM (and is IHDM's sampling noise delta), `variance` to DDPM, `prior`
    is IHDM's (`processes.load_prior`).
    `labels` ([num] int) and `guidance` condition a class-conditional model (`eps_fn`).
    Returns float32 numpy [num, H, W, C] in [-1, 1] (and [num_frames, num, H, W, C] frames if asked).
    Batch i uses key fold_in(key, i): for a fixed batch size, the first images do not depend on `num`.
    """
    if sampler not in samplers.SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(samplers.SAMPLERS)}")
    kwargs = samplers.SAMPLERS[sampler].options(steps, eta, variance, prior)
    if "num_steps" in kwargs:
        samplers.ddim_timesteps(s.num_timesteps, steps)  # validates steps
    mesh = mesh or parallel.make_mesh()
    n_dev = mesh.shape[parallel.DATA]
    batch_size = max(n_dev, min(batch_size, -(-num // n_dev) * n_dev) // n_dev * n_dev)
    if labels is not None:
        labels = np.resize(np.asarray(labels, np.int32), -(-num // batch_size) * batch_size)  # pad the last batch
    kwargs.update(num_frames=num_frames, out_sharding=parallel.batch_sharded(mesh))
    outs, frames = [], []
    bar = tqdm(total=num, unit="image", desc=f"{sampler} sampling", disable=not progress, dynamic_ncols=True,
               postfix="compiling the sampler")

    def on_step(i, n):   # the bar moves with the sampler's steps: images done + this batch's fraction
        if bar.postfix:
            bar.set_postfix_str("")
        target = min(num, len(outs) * batch_size + round(batch_size * (i + 1) / n))
        if target > bar.n:
            bar.update(target - bar.n)

    with bar, samplers.reporting(on_step if progress else None):
        for i in range(-(-num // batch_size)):
            batch_labels = None if labels is None else labels[i * batch_size:(i + 1) * batch_size]
            fn = eps_fn(graphdef, params, s, prediction, batch_labels, guidance)
            out = samplers.SAMPLERS[sampler](fn, s, jax.random.fold_in(key, i), (batch_size, *image_shape), **kwargs)
            x, f = out if num_frames else (out, None)
            outs.append(np.asarray(x))
            if num_frames:
                frames.append(np.asarray(f))
    x = np.concatenate(outs)[:num]
    return (x, np.concatenate(frames, axis=1)[:, :num]) if num_frames else x
