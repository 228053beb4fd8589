"""FID's Inception-v3 in JAX: the weights file is checked, the pieces match independent computations, and the
whole network maps RGB images to 2048 pool features (random weights: no file is downloaded in tests)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import inception


def _random_state_dict(path, seed=0):
    """pytorch-fid's names and shapes, He-initialised kernels and mild BatchNorm statistics."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for key, shape in inception.state_dict_shapes().items():
        if key.endswith("conv.weight"):
            arrays[key] = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape).astype(np.float32)
        elif key.endswith("running_var") or key.endswith("bn.weight"):
            arrays[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            arrays[key] = rng.normal(0, 0.1, shape).astype(np.float32)
    arrays["fc.weight"] = np.zeros((1008, 2048), np.float32)   # extra keys of the real file are ignored
    np.savez(path, **arrays)
    return arrays


def test_folded_conv_is_conv_then_batchnorm_then_relu(tmp_path):
    arrays = _random_state_dict(tmp_path / "w.npz")
    params = inception.load(tmp_path / "w.npz")
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 192))
    name = "Mixed_6b.branch7x7_2"   # a 1x7 kernel: padding (0, 3)
    x = x[..., :128]
    w = arrays[f"{name}.conv.weight"]
    y = jax.lax.conv_general_dilated(x, jnp.asarray(w), (1, 1), ((0, 0), (3, 3)),
                                     dimension_numbers=("NHWC", "OIHW", "NHWC"))
    bn = {k: arrays[f"{name}.bn.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
    expected = np.maximum((y - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-3) * bn["weight"] + bn["bias"], 0)
    np.testing.assert_allclose(inception._conv(params, name, x), expected, rtol=1e-4, atol=1e-4)


def test_average_pool_excludes_the_padding():
    x = jax.random.uniform(jax.random.PRNGKey(1), (1, 5, 6, 2))
    out = np.asarray(inception._avg_pool(x))
    a = np.asarray(x)
    for i, j in [(0, 0), (0, 3), (2, 2), (4, 5)]:
        window = a[0, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
        np.testing.assert_allclose(out[0, i, j], window.mean(axis=(0, 1)), rtol=1e-6)


def test_pool_features_of_rgb_images(tmp_path):
    _random_state_dict(tmp_path / "w.npz")
    params = inception.load(tmp_path / "w.npz")
    images = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    f = inception.features(params, images, batch_size=3)
    assert f.shape == (3, inception.FEATURES) and np.isfinite(f).all() and f.std() > 0
    np.testing.assert_allclose(inception.features(params, images[::-1], batch_size=3)[::-1], f, rtol=1e-4,
                               atol=1e-5)
    assert inception.fid(params, images, images) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="RGB"):
        inception.features(params, images[..., :1])


def test_weights_file_errors_say_what_to_do(tmp_path):
    with pytest.raises(inception.InceptionWeightsError, match="pytorch-fid"):
        inception.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(inception.InceptionWeightsError, match="not a readable"):
        inception.load(tmp_path / "bad.npz")
    arrays = _random_state_dict(tmp_path / "w.npz")
    del arrays["Mixed_7c.branch_pool.bn.running_var"]
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(inception.InceptionWeightsError, match="Mixed_7c.branch_pool.bn.running_var is missing"):
        inception.load(tmp_path / "partial.npz")
