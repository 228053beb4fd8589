"""Datasets: the offline MNIST sample, CIFAR-10 from its tarball, TFDS without TensorFlow."""

import numpy as np
import pytest

from diffjax import data


def test_mnist_sample_split_is_400_train_and_100_test_digits_per_class():
    train, test = data.mnist_sample("train"), data.mnist_sample("test")
    assert train.images.shape == (4000, 28, 28, 1) and test.images.shape == (1000, 28, 28, 1)
    assert np.bincount(train.labels).tolist() == [400] * 10 and np.bincount(test.labels).tolist() == [100] * 10


def _cifar_tarball(path, per_batch=4, seed=0):
    """A small file in the layout of cifar-10-python.tar.gz: 5 train batches and a test batch."""
    import io
    import pickle
    import tarfile

    rng = np.random.default_rng(seed)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            rows = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = list(rng.integers(0, 10, per_batch))
            batches[name] = (rows, labels)
            raw = pickle.dumps({b"data": rows, b"labels": labels})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return batches


def test_cifar10_python_reads_the_tarball_as_nhwc_without_tensorflow(tmp_path):
    batches = _cifar_tarball(tmp_path / "c.tar.gz")
    train, test = (data.load("cifar10", s, path=str(tmp_path / "c.tar.gz")) for s in ("train", "test"))
    assert train.images.shape == (20, 32, 32, 3) and test.images.shape == (4, 32, 32, 3)
    rows, labels = batches["data_batch_2"]
    # pixel (i, j) of channel c is row entry c * 1024 + i * 32 + j
    np.testing.assert_array_equal(train.images[4:8, 5, 7, 2], rows[:, 2 * 1024 + 5 * 32 + 7])
    assert train.labels[4:8].tolist() == labels and test.labels.tolist() == batches["test_batch"][1]


def test_a_damaged_cifar10_tarball_is_one_error_naming_it(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"garbage")
    with pytest.raises(data.DataUnavailableError, match="bad.tar.gz is not a readable cifar-10-python.tar.gz"):
        data.load("cifar10", "train", path=str(bad))


def test_tfds_without_tensorflow_says_which_extra_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "tensorflow" else real(n, *a))
    with pytest.raises(data.DataUnavailableError, match=r"needs TensorFlow: pip install 'diffjax\[tfds\]'"):
        data.load("cifar10", "train")
    assert data.load("mnist", "test").name == "mnist_sample"   # MNIST falls back to the offline sample
