"""Sample quality of generated digits: a Fréchet distance in the feature space of a small digit classifier.

FD = ||mu_g - mu_r||^2 + tr(C_g + C_r - 2 (C_g C_r)^(1/2)) (Heusel et al. 2017, the FID formula) between
Gaussians fitted to the 128-d penultimate features of generated and real test digits. The classifier is
trained here, on the train split, in one jitted loop: deterministic for its seed, about half a minute on
2 CPU cores, cached in `cache_dir` and verified on load. Next to every score, `floors` says what a number
means: the FD of real train digits (as many as the samples) and of lightly blurred test digits against
the test digits; and the classifier's view of diversity, the entropy of its predicted-class histogram
(log 10 = 2.303 nats for balanced classes).
"""

import logging
import os
import zipfile
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from diffjax import data, heat, images, metrics

FEATURES = 128
VERSION = 1  # bump when the network or its training changes: old cache files are then ignored
DEFAULT_CACHE = Path(os.environ.get("DIFFJAX_CACHE", Path.home() / ".cache" / "diffjax"))
log = logging.getLogger(__name__)


class DigitNet(nnx.Module):
    """Conv(16) - Conv(32, /2) - Conv(32, /2) - Dense(128) = features - Dense(10), ReLU between."""

    def __init__(self, rngs: nnx.Rngs, channels: int = 1, image_size: int = 28):
        self.convs = nnx.List([nnx.Conv(channels, 16, (3, 3), rngs=rngs),
                               nnx.Conv(16, 32, (3, 3), strides=2, rngs=rngs),
                               nnx.Conv(32, 32, (3, 3), strides=2, rngs=rngs)])
        side = -(-(-(-image_size // 2)) // 2)
        self.dense = nnx.Linear(32 * side * side, FEATURES, rngs=rngs)
        self.out = nnx.Linear(FEATURES, 10, rngs=rngs)

    def features(self, x):
        """x: [B, H, W, C] in [-1, 1] -> [B, 128]."""
        for conv in self.convs:
            x = nnx.relu(conv(x))
        return nnx.relu(self.dense(x.reshape(x.shape[0], -1)))

    def __call__(self, x):
        return self.out(self.features(x))


class Classifier(NamedTuple):
    graphdef: nnx.GraphDef
    params: nnx.State
    test_accuracy: float


def _shift(key, x, max_shift: int = 2):
    """Each image rolled by a random (dy, dx) in [-max_shift, max_shift]^2 (MNIST borders are black)."""
    shifts = jax.random.randint(key, (x.shape[0], 2), -max_shift, max_shift + 1)
    return jax.vmap(lambda img, s: jnp.roll(img, s, axis=(0, 1)))(x, shifts)


def train(train_ds: data.Dataset, seed: int = 0, steps: int = 1000, batch_size: int = 64, lr: float = 2e-3,
          progress: bool = True):
    """Trains DigitNet by Adam (cosine-decayed rate) on cross-entropy with random shifts of up to 2 px, one
    jitted step per call (XLA:CPU runs the convolutions' gradients ~20x slower inside a `lax.scan`).
    Returns (graphdef, params)."""
    init_key, loop_key = jax.random.split(jax.random.PRNGKey(seed))
    _, h, w, c = train_ds.images.shape
    graphdef, params = nnx.split(DigitNet(nnx.Rngs(init_key), c, h))
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
    x_all, y_all = jnp.asarray(train_ds.images), jnp.asarray(train_ds.labels)

    def loss_fn(p, x, y):
        logits = nnx.merge(graphdef, p)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(p, opt, i):
        k_idx, k_shift = jax.random.split(jax.random.fold_in(loop_key, i))
        idx = jax.random.randint(k_idx, (batch_size,), 0, x_all.shape[0])
        x = _shift(k_shift, data.to_float(x_all[idx]))
        grads = jax.grad(loss_fn)(p, x, y_all[idx])
        updates, opt = tx.update(grads, opt, p)
        return optax.apply_updates(p, updates), opt

    opt = tx.init(params)
    for i in tqdm(range(steps), desc="training the digit classifier (once, then cached)", unit="step",
                  disable=not progress, dynamic_ncols=True):
        params, opt = step(params, opt, i)
    return graphdef, params


def _apply(graphdef, params, images_u8, fn: str, batch_size: int = 500) -> np.ndarray:
    """DigitNet's `fn` ("features" or "__call__") of uint8 images, in batches. [N, ...] numpy."""
    call = _jitted(graphdef, fn)
    return np.concatenate([np.asarray(call(params, data.to_float(images_u8[i:i + batch_size])))
                           for i in range(0, len(images_u8), batch_size)])


_JITTED = {}


def _jitted(graphdef, fn):
    if (graphdef, fn) not in _JITTED:
        _JITTED[graphdef, fn] = jax.jit(lambda p, x: getattr(nnx.merge(graphdef, p), fn)(x))
    return _JITTED[graphdef, fn]


def features(clf: Classifier, images_u8) -> np.ndarray:
    """[N, H, W, C] uint8 -> [N, 128] float32 penultimate features."""
    return _apply(clf.graphdef, clf.params, np.asarray(images_u8), "features")


def predict(clf: Classifier, images_u8) -> np.ndarray:
    """[N, H, W, C] uint8 -> [N] int predicted classes."""
    return _apply(clf.graphdef, clf.params, np.asarray(images_u8), "__call__").argmax(-1)


def _cache_file(cache_dir, train_ds: data.Dataset, seed: int) -> Path:
    return Path(cache_dir) / f"digit_classifier_v{VERSION}_{train_ds.name}_{len(train_ds.images)}_seed{seed}.npz"


def _read_cached(path: Path, graphdef, abstract) -> tuple[nnx.State, float] | None:
    """The cached params if the file holds every array with the right shape, all finite; else None."""
    try:
        with np.load(path) as z:
            arrays = dict(z)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        log.warning("digit classifier cache %s is unreadable (%s): training it again", path, type(e).__name__)
        return None
    leaves = jax.tree_util.tree_leaves_with_path(abstract)
    names = [jax.tree_util.keystr(p) for p, _ in leaves]
    if any(n not in arrays or arrays[n].shape != a.shape or not np.isfinite(arrays[n]).all()
           for n, (_, a) in zip(names, leaves)) or "test_accuracy" not in arrays:
        log.warning("digit classifier cache %s does not match the network: training it again", path)
        return None
    params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(abstract), [arrays[n] for n in names])
    return params, float(arrays["test_accuracy"])


def load_or_train(cache_dir, train_ds: data.Dataset, test_ds: data.Dataset, seed: int = 0) -> Classifier:
    """The digit classifier of `train_ds`: read from `cache_dir` if a verified copy is there, else trained
    (and cached, atomically). Its accuracy on `test_ds` comes with it."""
    _, h, w, c = train_ds.images.shape
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: DigitNet(nnx.Rngs(0), c, h)))
    path = _cache_file(cache_dir, train_ds, seed)
    cached = _read_cached(path, graphdef, abstract) if path.exists() else None
    if cached is not None:
        return Classifier(graphdef, *cached)
    graphdef, params = train(train_ds, seed)
    accuracy = float(np.mean(_apply(graphdef, params, test_ds.images, "__call__").argmax(-1) == test_ds.labels))
    flat = {jax.tree_util.keystr(p): np.asarray(a) for p, a in jax.tree_util.tree_leaves_with_path(params)}
    images.save_arrays(path, test_accuracy=np.float64(accuracy), **flat)
    return Classifier(graphdef, params, accuracy)


def class_entropy(predicted: np.ndarray) -> float:
    """Entropy (nats) of the histogram of predicted classes: log 10 when every class is equally frequent."""
    p = np.bincount(predicted, minlength=10) / len(predicted)
    return float(-np.sum(p[p > 0] * np.log(p[p > 0])))


def score(clf: Classifier, generated_u8, reference_u8) -> dict:
    """FD of generated against reference digits in the classifier's features, and its class entropy."""
    fd = metrics.frechet_distance(*metrics.gaussian_stats(features(clf, generated_u8)),
                                  *metrics.gaussian_stats(features(clf, reference_u8)))
    return {"fd": fd, "class_entropy": class_entropy(predict(clf, generated_u8))}


def floors(clf: Classifier, train_ds: data.Dataset, test_ds: data.Dataset, num: int,
           blur_sigma: float = 1.0) -> dict:
    """What the score of `num` samples means: FD of `num` real train digits (an equal share of each class,
    the first in order) and of the test digits blurred by a Gaussian of `blur_sigma` px, both against the
    test digits, and the test digits' class entropy under the classifier."""
    per_class = -(-num // 10)
    pick = np.concatenate([np.flatnonzero(train_ds.labels == k)[:per_class] for k in range(10)])[:num]
    blurred = data.to_uint8(heat.heat(data.to_float(test_ds.images), blur_sigma**2 / 2))
    return {"fd_train_vs_test": score(clf, train_ds.images[pick], test_ds.images)["fd"],
            f"fd_blurred_{blur_sigma:g}px_vs_test": score(clf, blurred, test_ds.images)["fd"],
            "test_class_entropy": class_entropy(predict(clf, test_ds.images)),
            "classifier_test_accuracy": clf.test_accuracy}
