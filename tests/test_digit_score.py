"""The digit classifier behind the sample score: accurate, deterministic for its seed, cached and verified."""

import functools

import jax
import numpy as np
import pytest

from diffjax import data, digit_score


@pytest.fixture(scope="module")
def splits():
    return data.mnist_sample("train"), data.mnist_sample("test")


def test_classifier_is_accurate_cached_and_a_damaged_cache_is_retrained(splits, digit_cache, tmp_path,
                                                                         monkeypatch):
    clf = digit_score.load_or_train(digit_cache, *splits)
    assert clf.test_accuracy >= 0.95
    again = digit_score.load_or_train(digit_cache, *splits)  # read back, verified
    jax.tree.map(np.testing.assert_array_equal, clf.params, again.params)
    path = digit_score._cache_file(tmp_path, splits[0], 0)   # a truncated copy is detected and trained again
    path.write_bytes(digit_score._cache_file(digit_cache, splits[0], 0).read_bytes()[:1000])
    short = functools.partial(digit_score.train, steps=5)    # (5 steps: training is deterministic, tested below)
    monkeypatch.setattr(digit_score, "train", short)
    retrained = digit_score.load_or_train(tmp_path, *splits)
    jax.tree.map(np.testing.assert_array_equal, short(splits[0], 0)[1], retrained.params)
    reread = digit_score.load_or_train(tmp_path, *splits)     # and cached again, verified
    jax.tree.map(np.testing.assert_array_equal, retrained.params, reread.params)
    assert reread.test_accuracy == retrained.test_accuracy < 0.95


def test_scores_order_real_blurred_and_noise_digits(splits, digit_cache):
    train_ds, test_ds = splits
    clf = digit_score.load_or_train(digit_cache, train_ds, test_ds)
    floors = digit_score.floors(clf, train_ds, test_ds, 500)
    noise = np.asarray(jax.random.randint(jax.random.PRNGKey(0), (500, 28, 28, 1), 0, 256), np.uint8)
    ones = test_ds.images[test_ds.labels == 1]
    assert floors["fd_train_vs_test"] < floors["fd_blurred_1px_vs_test"] < digit_score.score(clf, noise,
                                                                                                test_ds.images)["fd"]
    assert abs(floors["test_class_entropy"] - np.log(10)) < 0.01
    assert digit_score.score(clf, ones, test_ds.images)["class_entropy"] < 0.2  # one class only


def test_training_is_deterministic_for_its_seed(splits):
    a = digit_score.train(splits[0], seed=3, steps=5)[1]
    b = digit_score.train(splits[0], seed=3, steps=5)[1]
    c = digit_score.train(splits[0], seed=4, steps=5)[1]
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c)))
