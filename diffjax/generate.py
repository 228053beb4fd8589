"""Images from a trained UNet: the model's eps_fn handed to a sampler, in device-sharded batches."""

import functools

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from diffjax import gaussian, parallel, samplers


@functools.lru_cache(maxsize=None)
def _apply(graphdef, prediction: str):
    def eps(params, s, y, x_t, t):
        out = nnx.merge(graphdef, params)(x_t, t, y)
        return gaussian.eps_from_prediction(s, prediction, x_t, t, out)

    return eps


def eps_fn(graphdef, params, s, prediction: str = "eps", labels=None) -> jax.tree_util.Partial:
    """eps_theta(x_t, t) as a pytree `Partial`: params are traced as jit arguments, not constants.
    `s`: the process object (a `Schedule` where `prediction` is x0 or v).

    `labels` ([B] int, or None = the null label) condition a class-conditional model.
    """
    return jax.tree_util.Partial(_apply(graphdef, prediction), params, s, labels)


def sample(graphdef, params, s, key, num: int, image_shape, *, mesh=None, sampler: str = "ddim",
           steps: int = 50, eta: float = 0.0, batch_size: int = 256, prediction: str = "eps",
           num_frames: int = 0, progress: bool = False, prior=None, variance: str = "fixed_small"):
    """Draws `num` images in batches of `batch_size`, each batch sharded over the mesh's `data` axis.

    `s` is the process object (`processes.make`); `steps` applies to every sampler but DDPM and IHDM (which
    take all their steps), `eta` to DDIM (and is IHDM's sampling noise delta), `variance` to DDPM, `prior` is IHDM's (`processes.load_prior`).
    Returns float32 numpy [num, H, W, C] in [-1, 1] (and [num_frames, num, H, W, C] frames if asked).
    Batch i uses key fold_in(key, i): for a fixed batch size, the first images do not depend on `num`.
    """
    if sampler not in samplers.SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(samplers.SAMPLERS)}")
    kwargs = {"ddim": dict(num_steps=steps, eta=eta), "ddpm": dict(variance=variance),
              "ihdm": dict(prior=prior, delta=eta)}.get(sampler, dict(num_steps=steps))
    if "num_steps" in kwargs:
        samplers.ddim_timesteps(s.num_timesteps, steps)  # validates steps
    mesh = mesh or parallel.make_mesh()
    n_dev = mesh.shape[parallel.DATA]
    batch_size = max(n_dev, min(batch_size, -(-num // n_dev) * n_dev) // n_dev * n_dev)
    fn = eps_fn(graphdef, params, s, prediction)
    kwargs.update(num_frames=num_frames, out_sharding=parallel.batch_sharded(mesh))
    outs, frames = [], []
    for i in tqdm(range(-(-num // batch_size)), desc=f"{sampler} sampling", disable=not progress):
        out = samplers.SAMPLERS[sampler](fn, s, jax.random.fold_in(key, i), (batch_size, *image_shape), **kwargs)
        x, f = out if num_frames else (out, None)
        outs.append(np.asarray(x))
        if num_frames:
            frames.append(np.asarray(f))
    x = np.concatenate(outs)[:num]
    return (x, np.concatenate(frames, axis=1)[:, :num]) if num_frames else x
