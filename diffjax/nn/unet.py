"""The DDPM UNet noise predictor (Ho et al. 2020, Appendix B), all sizes from the config.

Down path: `num_res_blocks` ResBlocks per level (+ attention at `attn_resolutions`), a
strided conv between levels; middle: Res-Attn-Res; up path: `num_res_blocks + 1`
ResBlocks per level on the concatenated skips, nearest-neighbour upsampling between levels.
Optional class conditioning adds a label embedding to the time embedding; label
`num_classes` is the null label (for classifier-free guidance).
"""

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from diffjax.nn.conv import Conv
from diffjax.nn.layers import AttnBlock, Downsample, GroupNorm, ResBlock, Upsample, timestep_embedding


class UNet(nnx.Module):
    """eps_theta(x_t, t[, y]): [B, H, W, C] x [B] -> [B, H, W, out_channels]."""

    def __init__(self, *, image_size: int, in_channels: int, out_channels: int | None = None, ch: int = 128,
                 ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), attn_middle: bool = True, dropout: float = 0.1,
                 groups: int = 32, num_classes: int = 0, dtype=None, rngs: nnx.Rngs):
        self.ch = ch
        self.num_res_blocks = num_res_blocks
        self.num_classes = num_classes
        temb_dim = 4 * ch
        self.temb1 = nnx.Linear(ch, temb_dim, dtype=dtype, rngs=rngs)
        self.temb2 = nnx.Linear(temb_dim, temb_dim, dtype=dtype, rngs=rngs)
        self.label_emb = nnx.Embed(num_classes + 1, temb_dim, rngs=rngs) if num_classes else None
        self.conv_in = Conv(in_channels, ch, (3, 3), dtype=dtype, rngs=rngs)

        res_block = lambda a, b: ResBlock(a, b, temb_dim, groups, dropout, rngs=rngs, dtype=dtype)  # noqa: E731
        attn = lambda c, r: AttnBlock(c, groups, rngs=rngs, dtype=dtype) if r in attn_resolutions else None  # noqa

        skips, c, res = [ch], ch, image_size
        down = []
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                down.append((res_block(c, ch * mult), attn(ch * mult, res)))
                c = ch * mult
                skips.append(c)
            if level != len(ch_mult) - 1:
                down.append((Downsample(c, rngs=rngs, dtype=dtype), None))
                res = (res + 1) // 2
                skips.append(c)
        self.down = nnx.List([nnx.List(d) for d in down])
        self.mid1 = res_block(c, c)
        self.mid_attn = AttnBlock(c, groups, rngs=rngs, dtype=dtype) if attn_middle else None
        self.mid2 = res_block(c, c)
        up = []
        for level, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                up.append((res_block(c + skips.pop(), ch * mult), attn(ch * mult, res)))
                c = ch * mult
            if level != 0:
                up.append((Upsample(c, rngs=rngs, dtype=dtype), None))
                res *= 2
        self.up = nnx.List([nnx.List(u) for u in up])
        self.norm_out = GroupNorm(c, num_groups=groups, rngs=rngs)
        self.conv_out = Conv(c, out_channels or in_channels, (3, 3), dtype=dtype, rngs=rngs,
                             kernel_init=nnx.initializers.variance_scaling(1e-10, "fan_avg", "uniform"))

    def __call__(self, x, t, y=None, *, train: bool = False, rngs: nnx.Rngs | None = None):
        """x: [B, H, W, C] float; t: [B] int; y: [B] int labels in [0, num_classes] or None (= null)."""
        temb = self.temb2(nnx.silu(self.temb1(timestep_embedding(t, self.ch))))
        if self.label_emb is not None:
            y = jnp.full(t.shape, self.num_classes, jnp.int32) if y is None else y
            temb = temb + self.label_emb(y)
        hs = [self.conv_in(x)]
        for block, att in self.down:
            h = block(hs[-1], temb, train=train, rngs=rngs) if isinstance(block, ResBlock) else block(hs[-1])
            hs.append(att(h) if att is not None else h)
        h = self.mid1(hs[-1], temb, train=train, rngs=rngs)
        h = self.mid_attn(h) if self.mid_attn is not None else h
        h = self.mid2(h, temb, train=train, rngs=rngs)
        for block, att in self.up:
            if isinstance(block, ResBlock):
                h = block(jnp.concatenate([h, hs.pop()], axis=-1), temb, train=train, rngs=rngs)
                h = att(h) if att is not None else h
            else:
                h = block(h)
        return self.conv_out(self.norm_out(h, silu=True)).astype(x.dtype)


def param_count(model: nnx.Module) -> int:
    """Number of scalar parameters."""
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def init_unet(key, **kwargs) -> UNet:
    """A UNet(**kwargs) whose parameters are initialised in one compiled program from `key`; with key=None,
    the abstract UNet (parameters as `jax.ShapeDtypeStruct`, nothing computed).

    Eager construction compiles every initialiser separately (about 25 s on 2 CPU cores); the one program is
    compiled without XLA's backend optimisations, which only slow down compiling a run-once program
    (17 s -> 5 s for the tiny test UNet on 2 CPU cores). It is traced and compiled once per process for each
    architecture: every later model of the same architecture costs one call of it.
    """
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    key_type = ((2,), jnp.dtype(jnp.uint32)) if key is None else (tuple(key.shape), jnp.dtype(key.dtype))
    graphdef, traced = _init_program(frozen, key_type)
    if key is None:
        return nnx.merge(graphdef, traced.out_info)
    return nnx.merge(graphdef, _compiled(frozen, key_type)(key))


@functools.cache
def _init_program(frozen_kwargs: tuple, key_type: tuple):
    """(graphdef, traced initialiser) of UNet(**dict(frozen_kwargs)) for keys of `key_type` (shape, dtype)."""
    graphdef = []

    def init(k):
        # Ops on concrete values run eagerly: flax's RNG counters stay concrete, so incrementing one no longer
        # builds JAX's error text about its tracer, whose length grows with the trace (2.1 -> 1.0 s per trace
        # for a 3-level MNIST UNet). The same keys are folded in: the same parameters.
        with jax.ensure_compile_time_eval():
            g, state = nnx.split(UNet(**dict(frozen_kwargs), rngs=nnx.Rngs(params=k)))
        graphdef.append(g)
        return state

    traced = jax.jit(init, compiler_options={"xla_backend_optimization_level": 0}).trace(
        jax.ShapeDtypeStruct(*key_type))
    return graphdef[0], traced


@functools.cache
def _compiled(frozen_kwargs: tuple, key_type: tuple):
    """The compiled `_init_program`: key -> initialised parameters."""
    return _init_program(frozen_kwargs, key_type)[1].lower().compile()
