"""FID features: the 2048-d pool features of the Inception-v3 of the TensorFlow FID code (Heusel et al. 2017).

The network is the FID variant of Inception-v3 as ported by pytorch-fid (Seitzer 2020, `FIDInceptionA/C/E`:
average pools that exclude padding, a max pool in the last block), run here in JAX from a local .npz that
holds pytorch-fid's state dict (its names, OIHW kernels, BatchNorm with eps 1e-3, folded into the
convolutions at load). Images are resized bilinearly to 299x299 and scaled to [-1, 1], as there. Nothing is
downloaded: `load` names the file the user must provide (see README, "CIFAR-10 FID").
"""

import functools
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from diffjax import metrics

FEATURES = 2048
SIZE = 299
HOW_TO_GET = ("convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth (github.com/mseitzer/pytorch-fid "
              "releases) once: python -c \"import torch, numpy as np; sd = torch.load('pt_inception-2015-12-05-"
              "6726825d.pth'); np.savez('pt_inception.npz', **{k: v.numpy() for k, v in sd.items()})\"")


class InceptionWeightsError(ValueError):
    """The Inception weights file is missing or does not hold the network."""


def _spec() -> dict[str, tuple[int, int, int, int]]:
    """name -> (in channels, out channels, kernel height, kernel width) of every conv + BatchNorm unit."""
    s = {"Conv2d_1a_3x3": (3, 32, 3, 3), "Conv2d_2a_3x3": (32, 32, 3, 3), "Conv2d_2b_3x3": (32, 64, 3, 3),
         "Conv2d_3b_1x1": (64, 80, 1, 1), "Conv2d_4a_3x3": (80, 192, 3, 3)}
    for n, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        s.update({f"{n}.branch1x1": (cin, 64, 1, 1), f"{n}.branch5x5_1": (cin, 48, 1, 1),
                  f"{n}.branch5x5_2": (48, 64, 5, 5), f"{n}.branch3x3dbl_1": (cin, 64, 1, 1),
                  f"{n}.branch3x3dbl_2": (64, 96, 3, 3), f"{n}.branch3x3dbl_3": (96, 96, 3, 3),
                  f"{n}.branch_pool": (cin, pool, 1, 1)})
    s.update({"Mixed_6a.branch3x3": (288, 384, 3, 3), "Mixed_6a.branch3x3dbl_1": (288, 64, 1, 1),
              "Mixed_6a.branch3x3dbl_2": (64, 96, 3, 3), "Mixed_6a.branch3x3dbl_3": (96, 96, 3, 3)})
    for n, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        s.update({f"{n}.branch1x1": (768, 192, 1, 1), f"{n}.branch7x7_1": (768, c7, 1, 1),
                  f"{n}.branch7x7_2": (c7, c7, 1, 7), f"{n}.branch7x7_3": (c7, 192, 7, 1),
                  f"{n}.branch7x7dbl_1": (768, c7, 1, 1), f"{n}.branch7x7dbl_2": (c7, c7, 7, 1),
                  f"{n}.branch7x7dbl_3": (c7, c7, 1, 7), f"{n}.branch7x7dbl_4": (c7, c7, 7, 1),
                  f"{n}.branch7x7dbl_5": (c7, 192, 1, 7), f"{n}.branch_pool": (768, 192, 1, 1)})
    s.update({"Mixed_7a.branch3x3_1": (768, 192, 1, 1), "Mixed_7a.branch3x3_2": (192, 320, 3, 3),
              "Mixed_7a.branch7x7x3_1": (768, 192, 1, 1), "Mixed_7a.branch7x7x3_2": (192, 192, 1, 7),
              "Mixed_7a.branch7x7x3_3": (192, 192, 7, 1), "Mixed_7a.branch7x7x3_4": (192, 192, 3, 3)})
    for n, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        s.update({f"{n}.branch1x1": (cin, 320, 1, 1), f"{n}.branch3x3_1": (cin, 384, 1, 1),
                  f"{n}.branch3x3_2a": (384, 384, 1, 3), f"{n}.branch3x3_2b": (384, 384, 3, 1),
                  f"{n}.branch3x3dbl_1": (cin, 448, 1, 1), f"{n}.branch3x3dbl_2": (448, 384, 3, 3),
                  f"{n}.branch3x3dbl_3a": (384, 384, 1, 3), f"{n}.branch3x3dbl_3b": (384, 384, 3, 1),
                  f"{n}.branch_pool": (cin, 192, 1, 1)})
    return s


SPEC = _spec()
BN_EPS = 1e-3


def state_dict_shapes() -> dict[str, tuple]:
    """Every array `load` reads, with its shape (pytorch-fid's names)."""
    shapes = {}
    for name, (cin, cout, kh, kw) in SPEC.items():
        shapes[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{stat}"] = (cout,)
    return shapes


def load(path) -> dict:
    """The network's parameters from pytorch-fid's state dict saved as .npz, BatchNorm folded into each
    convolution: name -> (HWIO kernel, bias). Raises InceptionWeightsError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise InceptionWeightsError(f"no Inception weights at {path}: {HOW_TO_GET}, then pass --inception=<that file>")
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InceptionWeightsError(f"{path} is not a readable .npz ({type(e).__name__}): {HOW_TO_GET}") from e
    for key, shape in state_dict_shapes().items():
        if key not in arrays or arrays[key].shape != shape:
            found = "missing" if key not in arrays else f"shape {arrays[key].shape}"
            raise InceptionWeightsError(f"{path} is not pytorch-fid's Inception: {key} is {found}, expected {shape}")
    params = {}
    for name in SPEC:
        scale = arrays[f"{name}.bn.weight"] / np.sqrt(arrays[f"{name}.bn.running_var"] + BN_EPS)
        kernel = arrays[f"{name}.conv.weight"].transpose(2, 3, 1, 0) * scale
        bias = arrays[f"{name}.bn.bias"] - arrays[f"{name}.bn.running_mean"] * scale
        params[name] = (jnp.asarray(kernel, jnp.float32), jnp.asarray(bias, jnp.float32))
    return params


def _conv(params, name, x, stride: int = 1, same: bool = True):
    """Conv + BatchNorm (folded) + ReLU; `same` pads by half the kernel (the blocks), else no padding (the stem)."""
    kernel, bias = params[name]
    kh, kw = kernel.shape[:2]
    pad = ((kh // 2, kh // 2), (kw // 2, kw // 2)) if same else ((0, 0), (0, 0))
    y = jax.lax.conv_general_dilated(x, kernel, (stride, stride), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.nn.relu(y + bias)


def _max_pool(x, stride: int, pad: int = 0):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1),
                                 ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def _avg_pool(x):
    """3x3 average, stride 1, padding 1, over the pixels inside the image only (count_include_pad=False)."""
    window = lambda a: jax.lax.reduce_window(a, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1),  # noqa: E731
                                             ((0, 0), (1, 1), (1, 1), (0, 0)))
    return window(x) / window(jnp.ones(x.shape[:3] + (1,), x.dtype))


def _chain(params, x, *names):
    for name in names:
        x = _conv(params, name, x)
    return x


def _block_a(p, n, x):
    return jnp.concatenate([_conv(p, f"{n}.branch1x1", x), _chain(p, x, f"{n}.branch5x5_1", f"{n}.branch5x5_2"),
                            _chain(p, x, *(f"{n}.branch3x3dbl_{i}" for i in (1, 2, 3))),
                            _conv(p, f"{n}.branch_pool", _avg_pool(x))], -1)


def _block_b(p, n, x):
    dbl = _chain(p, x, f"{n}.branch3x3dbl_1", f"{n}.branch3x3dbl_2")
    return jnp.concatenate([_conv(p, f"{n}.branch3x3", x, 2, False), _conv(p, f"{n}.branch3x3dbl_3", dbl, 2, False),
                            _max_pool(x, 2)], -1)


def _block_c(p, n, x):
    return jnp.concatenate([_conv(p, f"{n}.branch1x1", x), _chain(p, x, *(f"{n}.branch7x7_{i}" for i in (1, 2, 3))),
                            _chain(p, x, *(f"{n}.branch7x7dbl_{i}" for i in (1, 2, 3, 4, 5))),
                            _conv(p, f"{n}.branch_pool", _avg_pool(x))], -1)


def _block_d(p, n, x):
    b3 = _conv(p, f"{n}.branch3x3_2", _conv(p, f"{n}.branch3x3_1", x), 2, False)
    b7 = _conv(p, f"{n}.branch7x7x3_4", _chain(p, x, *(f"{n}.branch7x7x3_{i}" for i in (1, 2, 3))), 2, False)
    return jnp.concatenate([b3, b7, _max_pool(x, 2)], -1)


def _block_e(p, n, x, pool):
    b3 = _conv(p, f"{n}.branch3x3_1", x)
    dbl = _chain(p, x, f"{n}.branch3x3dbl_1", f"{n}.branch3x3dbl_2")
    return jnp.concatenate([_conv(p, f"{n}.branch1x1", x),
                            _conv(p, f"{n}.branch3x3_2a", b3), _conv(p, f"{n}.branch3x3_2b", b3),
                            _conv(p, f"{n}.branch3x3dbl_3a", dbl), _conv(p, f"{n}.branch3x3dbl_3b", dbl),
                            _conv(p, f"{n}.branch_pool", pool(x))], -1)


@jax.jit
def pool_features(params, images):
    """images: [B, H, W, 3] in [0, 1] -> [B, 2048] (the global average pool after Mixed_7c)."""
    x = jax.image.resize(images.astype(jnp.float32), (images.shape[0], SIZE, SIZE, 3), "bilinear") * 2 - 1
    x = _conv(params, "Conv2d_1a_3x3", x, 2, False)
    x = _conv(params, "Conv2d_2a_3x3", x, 1, False)
    x = _max_pool(_conv(params, "Conv2d_2b_3x3", x), 2)
    x = _max_pool(_conv(params, "Conv2d_4a_3x3", _conv(params, "Conv2d_3b_1x1", x), 1, False), 2)
    for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = _block_a(params, n, x)
    x = _block_b(params, "Mixed_6a", x)
    for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = _block_c(params, n, x)
    x = _block_d(params, "Mixed_7a", x)
    x = _block_e(params, "Mixed_7b", x, _avg_pool)
    x = _block_e(params, "Mixed_7c", x, functools.partial(_max_pool, stride=1, pad=1))
    return x.mean(axis=(1, 2))


def features(params, images_u8, batch_size: int = 50) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N, 2048] float64 pool features, in batches."""
    images_u8 = np.asarray(images_u8)
    if images_u8.ndim != 4 or images_u8.shape[-1] != 3:
        raise ValueError(f"FID needs RGB images [N, H, W, 3], got shape {images_u8.shape}")
    return np.concatenate([np.asarray(pool_features(params, jnp.asarray(images_u8[i:i + batch_size]) / 255.0),
                                      np.float64) for i in range(0, len(images_u8), batch_size)])


def fid(params, generated_u8, reference_u8) -> float:
    """FID (Heusel et al. 2017): the Fréchet distance of Gaussians fitted to the pool features."""
    return metrics.frechet_distance(*metrics.gaussian_stats(features(params, generated_u8)),
                                    *metrics.gaussian_stats(features(params, reference_u8)))
