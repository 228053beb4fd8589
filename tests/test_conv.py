"""oneDNN's convolutions (diffjax/nn/conv.py) against XLA's: forward pass and both gradients, the UNet through
them, determinism, and the fallback to XLA."""

import logging
import os
import platform
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffjax.nn import conv
from diffjax.nn.unet import UNet

# The oneDNN wheels exist for Linux x86-64 only; there the handler must build (a failure is a test failure).
ONEDNN_PLATFORM = sys.platform == "linux" and platform.machine() == "x86_64"
pytestmark = pytest.mark.skipif(not ONEDNN_PLATFORM, reason="oneDNN wheels are Linux x86-64 only")


def test_the_handler_builds_and_registers_on_linux_x86_64():
    assert conv.onednn_installed(), "pip install -e '.[dev]' installs the oneDNN wheels on Linux x86-64"
    conv.onednn_available.cache_clear()
    assert conv.onednn_available()


def test_without_the_onednn_wheels_xla_convolutions_run_with_one_warning(monkeypatch, caplog):
    conv.onednn_available.cache_clear()
    try:
        monkeypatch.setattr(conv, "onednn_installed", lambda: False)
        with caplog.at_level(logging.WARNING):
            assert not conv.onednn_available() and not conv.onednn_available()
        assert caplog.text.count("oneDNN is not installed: XLA's convolutions run") == 1
    finally:
        monkeypatch.undo()
        conv.onednn_available.cache_clear()


def _lax_conv(x, w, stride, padding):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("size,c_in,c_out,k,stride,padding", [
    (12, 8, 16, 3, 1, "SAME"), (12, 16, 8, 3, 2, "SAME"), (7, 16, 8, 3, 2, "SAME"), (10, 8, 24, 1, 1, "SAME"),
    (9, 4, 8, 3, 1, "VALID")])
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_forward_and_both_gradients_match_xla(size, c_in, c_out, k, stride, padding, dtype, tol):
    if jnp.dtype(dtype) not in conv.onednn_dtypes():
        pytest.skip("oneDNN has no bfloat16 convolutions on this CPU (no AVX-512): XLA's run")
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(size * c_in + k), 3)
    x = jax.random.normal(kx, (3, size, size, c_in))
    w = jax.random.normal(kw, (k, k, c_in, c_out)) / np.sqrt(k * k * c_in)
    pads = jax.lax.padtype_to_pads((size, size), (k, k), (stride, stride), padding)[0]
    xd, wd = x.astype(dtype), w.astype(dtype)
    y, vjp = jax.vjp(lambda x, w: conv.conv2d(x, w, stride, pads), xd, wd)
    y_ref, vjp_ref = jax.vjp(lambda x, w: _lax_conv(x, w, stride, padding), x, w)
    g = jax.random.normal(kg, y_ref.shape)
    assert y.shape == y_ref.shape and y.dtype == dtype
    (dx, dw), (dx_ref, dw_ref) = vjp(g.astype(dtype)), vjp_ref(g)
    assert dx.dtype == dtype and dw.dtype == dtype
    for got, want in ((y, y_ref), (dx, dx_ref), (dw, dw_ref)):
        assert _rel(got, want) < tol


def _conv_f64(x, w):
    """Independent reference: the 3x3 SAME convolution as nine shifted channel products in float64."""
    h, wd = x.shape[1:3]
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(np.einsum("nhwc,co->nhwo", xp[:, a:a + h, b:b + wd], np.asarray(w, np.float64)[a, b])
               for a in range(3) for b in range(3))


@pytest.mark.parametrize("n,h,w,c_in,c_out", [(3, 13, 13, 16, 32), (2, 8, 11, 32, 16), (1, 2, 3, 16, 16),
                                             (2, 28, 28, 128, 128)])
def test_winograd_forward_and_both_gradients_match_float64(n, h, w, c_in, c_out, monkeypatch):
    """Winograd F(4x4, 3x3) (kinds 3 and 4; from 16 channels on here; partial tiles at the borders included):
    y, dx and dw against float64 sums of shifted products."""
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 16)
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(h * c_in), 3)
    x = jax.random.normal(kx, (n, h, w, c_in))
    k = jax.random.normal(kw, (3, 3, c_in, c_out)) / np.sqrt(9 * c_in)
    g = jax.random.normal(kg, (n, h, w, c_out))
    fn = lambda x, k: jax.vjp(lambda x, k: conv.conv2d(x, k, 1, (1, 1)), x, k)
    hlo = jax.jit(lambda x, k, g: (fn(x, k)[0], fn(x, k)[1](g))).lower(x, k, g).as_text()
    assert {"kind = 3", "kind = 4"} <= set(re.findall(r"kind = \d", hlo)) and "kind = 0" not in hlo
    y, vjp = fn(x, k)
    dx, dk = vjp(g)
    xd, kd, gd = (np.asarray(a, np.float64) for a in (x, k, g))
    xp = np.pad(xd, ((0, 0), (1, 1), (1, 1), (0, 0)))
    dk_ref = np.stack([np.stack([np.einsum("nhwc,nhwo->co", xp[:, a:a + h, b:b + w], gd) for b in range(3)])
                       for a in range(3)])
    dx_ref = _conv_f64(gd, kd[::-1, ::-1].transpose(0, 1, 3, 2))
    for got, want in ((y, _conv_f64(xd, kd)), (dx, dx_ref), (dk, dk_ref)):
        assert _rel(got, want) < 5e-5


def test_a_bfloat16_conv_layer_runs_by_onednn_only_where_the_cpu_has_avx512(monkeypatch):
    flags = conv._cpu_flags().split()
    assert (jnp.dtype(jnp.bfloat16) in conv.onednn_dtypes()) == ("avx512bw" in flags and "avx512f" in flags)
    monkeypatch.setattr(conv, "use_onednn", lambda: True)
    layer = conv.Conv(8, 8, (3, 3), dtype=jnp.bfloat16, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 6, 6, 8), jnp.bfloat16)
    hlo = jax.jit(lambda x: nnx.merge(*nnx.split(layer))(x)).lower(x).as_text()
    assert (conv._TARGET in hlo) == (jnp.dtype(jnp.bfloat16) in conv.onednn_dtypes())
    assert np.isfinite(np.asarray(nnx.merge(*nnx.split(layer))(x), np.float32)).all()


def test_winograd_takes_3x3_float32_convolutions_of_32_channels_or_more_only(monkeypatch):
    def kinds(x, k, stride=1):
        hlo = jax.jit(lambda x, k: conv.conv2d(x, k, stride, (1, 1))).lower(x, k).as_text()
        return re.findall(r"kind = (\d)", hlo)
    x, k = jnp.ones((1, 9, 8, 32)), jnp.ones((3, 3, 32, 48))
    assert kinds(x, k) == ["3"]
    assert kinds(x, k[..., :16]) == kinds(x[..., :16], k[:, :, :16]) == ["0"]   # fewer than 32 channels
    assert kinds(jnp.ones((1, 9, 8, 40)), jnp.ones((3, 3, 40, 48))) == ["0"]     # not a multiple of 16
    assert kinds(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16)) == ["0"]
    assert kinds(x, k, stride=2) == ["0"]
    monkeypatch.setenv("DIFFJAX_WINOGRAD", "0")
    assert kinds(x, k) == ["0"]


@pytest.mark.parametrize("min_channels", [32, 64])   # Winograd, direct
def test_repeated_calls_are_bitwise_equal(min_channels, monkeypatch):
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", min_channels)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 14, 14, 32))
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 32, 32))
    f = jax.jit(jax.grad(lambda x, w: jnp.sum(conv.conv2d(x, w, 1, (1, 1)) ** 2), argnums=(0, 1)))
    a, b = f(x, w), f(x, w)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_unet_through_onednn_equals_xla(monkeypatch):
    """The tiny UNet (strided downsampling, 1x1 shortcuts, attention; Winograd for its 3x3 convolutions of 16
    and 32 channels): output and every parameter's gradient."""
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 16)
    model = UNet(image_size=28, in_channels=1, ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(7,),
                 dropout=0.0, groups=4, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 28, 28, 1))
    t = jnp.array([1, 200, 500, 999])

    def loss(params):
        y = nnx.merge(graphdef, params)(x, t)
        return jnp.mean(y ** 2 + y)

    results = {}
    for onednn in (True, False):
        monkeypatch.setattr(conv, "use_onednn", lambda onednn=onednn: onednn)
        fn = jax.jit(jax.value_and_grad(loss))
        hlo = fn.lower(params).as_text()
        assert (conv._TARGET in hlo) == onednn and ("kind = 3" in hlo and "kind = 4" in hlo) == onednn
        results[onednn] = fn(params)
    (v1, g1), (v0, g0) = results[True], results[False]
    assert abs(float(v1) - float(v0)) <= 1e-5 * abs(float(v0))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        assert _rel(a, b) < 1e-4


def test_off_switch_and_failed_build_fall_back_to_xla(monkeypatch, tmp_path, caplog):
    conv.onednn_available.cache_clear()
    try:
        monkeypatch.setenv("DIFFJAX_ONEDNN", "0")
        assert not conv.onednn_available()
        conv.onednn_available.cache_clear()
        monkeypatch.delenv("DIFFJAX_ONEDNN")
        monkeypatch.setenv("DIFFJAX_CACHE", str(tmp_path))
        monkeypatch.setenv("CXX", "false")          # a compiler that always fails
        with caplog.at_level(logging.WARNING):
            assert not conv.onednn_available()
        assert "oneDNN convolutions unavailable, using XLA's (RuntimeError: false could not compile" in caplog.text
        assert not list(tmp_path.glob("*.so")) and not list(tmp_path.glob("tmp*"))   # nothing half-written
    finally:
        monkeypatch.undo()
        conv.onednn_available.cache_clear()
    assert conv.onednn_available()


def test_xla_convolutions_block_switches_tracing_to_xla(monkeypatch):
    monkeypatch.setattr(conv.jax, "device_count", lambda: 1)
    assert conv.use_onednn()
    with conv.xla_convolutions():
        assert not conv.use_onednn()
    assert conv.use_onednn()


def test_one_cpu_device_uses_onednn_and_several_do_not():
    """The switch itself, in fresh processes: one CPU device (the users' default) and 8 simulated ones."""
    code = ("import jax, diffjax; from diffjax.nn import conv; "
            "print(jax.device_count(), conv.use_onednn())")
    env = dict(os.environ, XLA_FLAGS="")
    one = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    eight = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert one.stdout.split() == ["1", "True"] and eight.stdout.split() == ["8", "False"]
