"""Device mesh and shardings for data parallelism over every (local or global) device."""

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = "data"


def initialize_distributed() -> None:
    """Joins a multi-host job when the launcher set JAX_COORDINATOR_ADDRESS; no-op otherwise."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS") and not jax.distributed.is_initialized():
        jax.distributed.initialize()


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis `data` over `devices` (default: all devices of all hosts)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimizer state, datasets)."""
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis is split over the `data` axis."""
    return NamedSharding(mesh, P(DATA))


def check_divisible(batch_size: int, mesh: Mesh, what: str = "batch size") -> None:
    n = mesh.shape[DATA]
    if batch_size % n:
        raise ValueError(f"{what} {batch_size} must be a multiple of the number of devices ({n})")
