"""Orbax checkpoints of the train state: save, restore (onto given shardings), resume."""

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A run directory has no usable checkpoint."""


def manager(workdir, max_to_keep: int = 2, create: bool = True) -> ocp.CheckpointManager:
    """A manager of `workdir/checkpoints/<step>`; Orbax writes each step atomically."""
    path = Path(workdir).absolute() / "checkpoints"
    if not create and not path.is_dir():
        raise CheckpointError(f"no checkpoints in {path.parent}: train there first "
                              f"(python -m experiments.train_ddpm --workdir {path.parent})")
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create))


def save(mngr: ocp.CheckpointManager, step: int, state) -> None:
    """Saves `state` (any pytree of arrays) at `step` and waits until it is on disk."""
    mngr.save(step, args=ocp.args.StandardSave(state), force=True)
    mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, target, step: int | None = None):
    """Restores the latest (or given) step into the structure, dtypes and shardings of `target`.

    `target` may hold arrays or `jax.ShapeDtypeStruct`s. Raises `CheckpointError` with what
    to do when there is no checkpoint or it cannot be read.
    """
    step = mngr.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"no checkpoint in {mngr.directory}: train first, or pass the run directory "
                              f"that holds one")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
        return mngr.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # Orbax/TensorStore raise many types for unreadable data
        raise CheckpointError(f"checkpoint {mngr.directory / str(step)} is corrupt or does not match this "
                              f"model ({type(e).__name__}); delete that step directory to fall back to an "
                              f"earlier one, or start a new --workdir") from e
