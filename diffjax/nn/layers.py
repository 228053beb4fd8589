"""Building blocks of the DDPM UNet (Ho et al. 2020, Appendix B; PixelCNN++ backbone)."""

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from diffjax.nn.conv import Conv
from diffjax.nn.dropout import dropout


def timestep_embedding(t: jnp.ndarray, dim: int, max_period: float = 10000.0) -> jnp.ndarray:
    """Sinusoidal embedding (Vaswani et al. 2017): [sin(t w_k), cos(t w_k)], w_k = P^(-k/(d/2-1)).

    t: [B] (any real dtype) -> [B, dim] float32, as in the DDPM code (`get_timestep_embedding`).
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def _spatial_sum(v):   # [B, ..., C] -> [B, C]
    return jnp.sum(v, axis=tuple(range(1, v.ndim - 1)))


def _group_mean(v, num_groups: int):   # [B, C] -> [B, C]: each channel gets the mean over its group's channels
    b, c = v.shape
    return jnp.repeat(v.reshape(b, num_groups, c // num_groups).mean(-1), c // num_groups, axis=1)


def _per_channel(v, x):   # [B, C] -> broadcastable against x [B, ..., C]
    return v.reshape((v.shape[0],) + (1,) * (x.ndim - 2) + (v.shape[1],))


def _group_norm_fwd(x_in, scale, bias, num_groups: int, epsilon: float, silu: bool):
    x = x_in.astype(jnp.float32)
    n = math.prod(x.shape[1:-1])
    mean = _group_mean(_spatial_sum(x) / n, num_groups)
    var = jnp.maximum(_group_mean(_spatial_sum(x * x) / n, num_groups) - mean * mean, 0.0)
    rstd = jax.lax.rsqrt(var + epsilon)
    a = rstd * scale
    y = x * _per_channel(a, x) + _per_channel(bias - mean * a, x)
    return (jax.nn.silu(y) if silu else y), (x_in, mean, rstd, scale, y if silu else None)


def _group_norm_bwd(num_groups: int, epsilon: float, silu: bool, res, g):
    """With xhat = (x - mu) r over a group of N elements: dx = r (gamma g - <gamma g> - xhat <gamma g xhat>),
    dgamma = sum g xhat, dbeta = sum g, from two spatial sums of g and g x; dx is one affine map of g and x.
    With SiLU, g is first multiplied by silu'(y) = s (1 + y (1 - s)), s = sigmoid(y), y saved by the forward."""
    x_in, mean, rstd, scale, y = res
    x, g = x_in.astype(jnp.float32), g.astype(jnp.float32)
    if silu:
        s = jax.nn.sigmoid(y)
        g = g * s * (1.0 + y * (1.0 - s))
    n = math.prod(x.shape[1:-1])
    t1, tx = _spatial_sum(g), _spatial_sum(g * x)           # sum g, sum g x per image and channel
    t2 = tx - mean * t1                                     # sum g (x - mu)
    m1 = _group_mean(scale * t1, num_groups) / n            # <gamma g>
    m2 = rstd * _group_mean(scale * t2, num_groups) / n     # <gamma g xhat>
    coef_x = -rstd * rstd * m2
    dx = g * _per_channel(scale * rstd, x) + x * _per_channel(coef_x, x) + _per_channel(-rstd * m1 - mean * coef_x, x)
    return dx.astype(x_in.dtype), jnp.sum(rstd * t2, axis=0), jnp.sum(t1, axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def group_norm(x, scale, bias, num_groups: int, epsilon: float, silu: bool = False):
    """Group normalisation (Wu & He 2018) of x [B, ..., C] in float32: per image and group of C/G channels,
    y = gamma (x - mu) / sqrt(var + eps) + beta over the spatial axes and the group's channels, with
    var = max(E[x^2] - mu^2, 0); `silu`: SiLU(y) = y sigmoid(y) (Elfwing et al. 2018) in the same op. Its
    gradient is the closed form above (the clamp, active only for a constant group, is not differentiated):
    autodiff's chain of broadcast terms was fused by XLA:CPU into both consumers of the cotangent (the
    convolution's data and weight gradients) and so computed twice. SiLU's factor joins that closed form
    (the reference train step on a 2-core Xeon: 15.1 -> 16.4 images/s, medians of 6 alternating runs)."""
    return _group_norm_fwd(x, scale, bias, num_groups, epsilon, silu)[0]


group_norm.defvjp(_group_norm_fwd, _group_norm_bwd)


class GroupNorm(nnx.GroupNorm):
    """nnx.GroupNorm's parameters, initialisation and variance formula, computed by `group_norm`: per-channel
    moments over the spatial axes averaged within each group, applied as one affine map x a_c + b_c. Flax
    reduces over a minor axis of C/G channels instead, which XLA:CPU runs 5x slower at 2 channels per group
    (the default MNIST UNet: 16 channels, 8 groups; forward and backward alike)."""

    def __call__(self, x, *, silu: bool = False):
        """GroupNorm(x), or SiLU(GroupNorm(x)) with `silu`."""
        return group_norm(x, self.scale[...], self.bias[...], self.num_groups, self.epsilon, silu)


class ResBlock(nnx.Module):
    """GN-SiLU-Conv, + Dense(temb), GN-SiLU-Dropout-Conv, plus a 1x1 shortcut if channels change."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int, groups: int, dropout: float, *, rngs: nnx.Rngs,
                 dtype=None):
        self.norm1 = GroupNorm(c_in, num_groups=groups, rngs=rngs)
        self.conv1 = Conv(c_in, c_out, (3, 3), dtype=dtype, rngs=rngs)
        self.temb = nnx.Linear(temb_dim, c_out, dtype=dtype, rngs=rngs)
        self.norm2 = GroupNorm(c_out, num_groups=groups, rngs=rngs)
        self.dropout_rate = dropout
        self.conv2 = Conv(c_out, c_out, (3, 3), dtype=dtype, rngs=rngs,
                          kernel_init=nnx.initializers.variance_scaling(1e-10, "fan_avg", "uniform"))
        self.skip = Conv(c_in, c_out, (1, 1), dtype=dtype, rngs=rngs) if c_in != c_out else None

    def __call__(self, x, temb, *, train: bool, rngs: nnx.Rngs | None):
        h = self.conv1(self.norm1(x, silu=True))
        h = h + self.temb(nnx.silu(temb))[:, None, None, :]
        h = self.norm2(h, silu=True)
        if train and self.dropout_rate > 0:
            h = dropout(h, self.dropout_rate, rngs.dropout())
        h = self.conv2(h)
        return (self.skip(x) if self.skip is not None else x) + h


class AttnBlock(nnx.Module):
    """Single-head self-attention over all H*W positions, residual: x + proj(softmax(q k^T / sqrt(C)) v)."""

    def __init__(self, c: int, groups: int, *, rngs: nnx.Rngs, dtype=None):
        self.norm = GroupNorm(c, num_groups=groups, rngs=rngs)
        self.qkv = nnx.Linear(c, 3 * c, dtype=dtype, rngs=rngs)
        self.proj = nnx.Linear(c, c, dtype=dtype, rngs=rngs,
                               kernel_init=nnx.initializers.variance_scaling(1e-10, "fan_avg", "uniform"))

    def __call__(self, x):
        b, h, w, c = x.shape
        q, k, v = jnp.split(self.qkv(self.norm(x)).reshape(b, h * w, 3 * c), 3, axis=-1)
        out = jax.nn.dot_product_attention(q[:, :, None], k[:, :, None], v[:, :, None])  # [B, HW, 1, C]
        return x + self.proj(out.reshape(b, h, w, c))


class Downsample(nnx.Module):
    """3x3 convolution with stride 2."""

    def __init__(self, c: int, *, rngs: nnx.Rngs, dtype=None):
        self.conv = Conv(c, c, (3, 3), strides=(2, 2), dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.conv(x)


class Upsample(nnx.Module):
    """Nearest-neighbour x2, then a 3x3 convolution."""

    def __init__(self, c: int, *, rngs: nnx.Rngs, dtype=None):
        self.conv = Conv(c, c, (3, 3), dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return self.conv(x)
