"""The UNet's 2-D convolutions: oneDNN's kernels and Winograd's algorithm on a single CPU device, XLA's elsewhere.

XLA:CPU runs a convolution through Eigen, and its weight gradient as a convolution over operands transposed to
[C, H, W, N] first. oneDNN, the library PyTorch uses on CPUs, has kernels for the forward pass, the data
gradient and the weight gradient of NHWC activations; on the reference network's shapes they run 1.1-1.8x as
fast as XLA's (README "CPU speed"), with results equal to float rounding. `onednn_conv.cc` wraps them as an
XLA FFI handler, together with Winograd's F(4x4, 3x3) (Lavin & Gray 2016) for 3x3 stride-1 SAME float32
convolutions with enough channels to gain (`_winograd`): 36 oneDNN matrix products instead of 9
shifted ones per 4x4 output tile, 4x fewer multiplications, 1.4-2.5x faster on the reference network's shapes,
with errors of about 1e-5 of the largest output (direct: 1e-6). The handler is compiled with the system's C++
compiler (`$CXX`, else `c++`) for this CPU against the `onednn-cpu-gomp` wheel at first use and cached in
`$DIFFJAX_CACHE` (default ~/.cache/diffjax). `conv2d` is a `custom_vjp` whose backward pass calls the gradient
kernels. Used where the default backend is one CPU device (a sharded batch would need a partitioning rule for
the custom call) and the handler builds; `DIFFJAX_ONEDNN=0` turns all of it off, `DIFFJAX_WINOGRAD=0` only
Winograd (read when tracing). Without the oneDNN wheels (they exist for Linux x86-64 only) or when the build fails,
XLA's convolutions run, with one warning.
"""

import contextlib
import ctypes
import functools
import hashlib
import importlib.metadata
import logging
import os
import platform
import shlex
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_SOURCE = Path(__file__).with_name("onednn_conv.cc")
_TARGET = "diffjax_onednn_conv"
_FORWARD, _DATA_GRAD, _WEIGHT_GRAD, _WINOGRAD, _WINOGRAD_WEIGHT_GRAD = 0, 1, 2, 3, 4


def _cache_dir() -> Path:
    return Path(os.environ.get("DIFFJAX_CACHE", Path.home() / ".cache" / "diffjax"))


def _onednn_paths() -> tuple[Path, Path]:
    """(include directory, library directory) of the installed oneDNN wheels."""
    header = next(f for f in importlib.metadata.files("onednn-devel-cpu-gomp")
                  if str(f).endswith("oneapi/dnnl/dnnl.hpp"))
    lib = next(f for f in importlib.metadata.files("onednn-cpu-gomp") if f.name == "libdnnl.so.3")
    return Path(header.locate()).resolve().parents[2], Path(lib.locate()).resolve().parent


def _cpu_flags() -> str:
    """This CPU's feature flags: the library is compiled for them (-march=native), so a shared cache keeps one
    build per kind of CPU."""
    try:
        return next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")),
                    platform.processor())
    except OSError:
        return platform.processor()


@functools.cache
def onednn_dtypes() -> tuple:
    """The dtypes oneDNN convolves here: float32, and bfloat16 where the CPU has AVX-512 (oneDNN's bfloat16
    convolutions need avx512_core; on AVX2 CPUs it has none, and XLA's run)."""
    flags = _cpu_flags().split()
    bf16 = all(f in flags for f in ("avx512f", "avx512bw", "avx512vl", "avx512dq"))
    return (jnp.dtype(jnp.float32),) + ((jnp.dtype(jnp.bfloat16),) if bf16 else ())


def build_library() -> Path:
    """Compile `onednn_conv.cc` into the cache (once per source, jaxlib, compiler and kind of CPU; atomic, so
    concurrent processes are safe) and return the shared library's path. Raises on any failure."""
    include, libdir = _onednn_paths()
    cxx = shlex.split(os.environ.get("CXX", "c++"))
    cmd = [*cxx, "-O3", "-march=native", "-fopenmp", "-std=c++17", "-shared", "-fPIC", "-w",
           f"-I{jax.ffi.include_dir()}", f"-I{include}", str(_SOURCE), f"-L{libdir}", "-l:libdnnl.so.3",
           f"-Wl,-rpath,{libdir}"]
    key = hashlib.sha256(_SOURCE.read_bytes() + " ".join(cmd).encode() + jax.__version__.encode()
                         + _cpu_flags().encode()).hexdigest()[:16]
    out = _cache_dir() / f"onednn_conv-{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            lib = Path(tmp) / out.name
            done = subprocess.run([*cmd, "-o", str(lib)], capture_output=True, text=True)
            if done.returncode:
                last = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
                raise RuntimeError(f"{cxx[0]} could not compile {_SOURCE.name}: {last[0]}")
            os.replace(lib, out)
    return out


def onednn_installed() -> bool:
    """Whether the oneDNN wheels are installed (`pip install 'diffjax[onednn]'`, Linux x86-64 only)."""
    try:
        importlib.metadata.distribution("onednn-devel-cpu-gomp")
        importlib.metadata.distribution("onednn-cpu-gomp")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@functools.cache
def onednn_available() -> bool:
    """Whether the oneDNN handler is built, loaded and registered with XLA (tried once per process; without the
    oneDNN wheels, or when the build fails, one warning says XLA's convolutions run instead)."""
    if os.environ.get("DIFFJAX_ONEDNN", "1") == "0":
        return False
    if not onednn_installed():
        logging.warning("oneDNN is not installed: XLA's convolutions run (on Linux x86-64, "
                        "pip install 'diffjax[onednn]' makes the CPU train step faster)")
        return False
    try:
        lib = ctypes.cdll.LoadLibrary(str(build_library()))
        jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(lib.DiffjaxOnednnConv), platform="cpu")
    except Exception as e:  # noqa: BLE001  (any failure means: use XLA's convolutions)
        logging.warning("oneDNN convolutions unavailable, using XLA's (%s: %s)", type(e).__name__, e)
        return False
    return True


_xla_only = False


@contextlib.contextmanager
def xla_convolutions():
    """Trace with XLA's convolutions inside this block: e.g. for XLA's FLOP count, blind to custom calls."""
    global _xla_only
    previous, _xla_only = _xla_only, True
    try:
        yield
    finally:
        _xla_only = previous


def use_onednn() -> bool:
    """oneDNN for the UNet's convolutions (decided when tracing): one CPU device and the handler available."""
    return not _xla_only and jax.default_backend() == "cpu" and jax.device_count() == 1 and onednn_available()


def _call(kind: int, a, b, shape, dtype, stride: int, pads: tuple[int, int]):
    return jax.ffi.ffi_call(_TARGET, jax.ShapeDtypeStruct(shape, dtype), vmap_method="sequential")(
        a, b, kind=np.int64(kind), stride=np.int64(stride), pad_lo=np.int64(pads[0]), pad_hi=np.int64(pads[1]))


def winograd_enabled() -> bool:
    """Whether eligible convolutions take Winograd's kernels: `DIFFJAX_WINOGRAD` is not 0 (read when tracing)."""
    return os.environ.get("DIFFJAX_WINOGRAD", "1") != "0"


# Below 32 channels the 36 products are too shallow to pay for the transforms: chains of ten 3x3 convolutions in one
# program (Zen 4 EPYC) ran at 0.78-1.02x the direct kernels' speed at 16 channels, 1.22-1.50x at 32 and 64.
WINOGRAD_MIN_CHANNELS = 32


def _winograd(x, w, stride, pads) -> bool:
    """Whether the handler's Winograd kernels take this convolution: enabled; 3x3, stride 1, SAME, float32;
    channel counts multiples of 16 and at least WINOGRAD_MIN_CHANNELS."""
    c, o = x.shape[3], w.shape[3]
    return (winograd_enabled() and w.shape[:2] == (3, 3) and stride == 1 and tuple(pads) == (1, 1)
            and x.dtype == jnp.float32 and c % 16 == 0 and o % 16 == 0 and min(c, o) >= WINOGRAD_MIN_CHANNELS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x, w, stride: int, pads: tuple[int, int]):
    """y[n, i, j, o] = sum_{a, b, c} x_pad[n, s i + a, s j + b, c] w[a, b, c, o] by oneDNN, or Winograd where
    `_winograd` holds: x [N, H, W, C] and w [KH, KW, C, O] of one dtype (float32 or bfloat16), stride s and
    padding (lo, hi) the same on both axes. The data gradient of a 3x3 SAME convolution is the convolution of
    dy with w flipped in space and transposed in channels, so Winograd's forward kernel serves it too."""
    if _winograd(x, w, stride, pads):
        return _call(_WINOGRAD, x, w, x.shape[:3] + w.shape[3:], x.dtype, stride, pads)
    return _call(_FORWARD, x, w, _out_shape(x.shape, w.shape, stride, pads), x.dtype, stride, pads)


def _out_shape(x_shape, w_shape, stride, pads):
    n, h, wd, _ = x_shape
    kh, kw, _, o = w_shape
    return n, (h + sum(pads) - kh) // stride + 1, (wd + sum(pads) - kw) // stride + 1, o


def _conv2d_fwd(x, w, stride, pads):
    return conv2d(x, w, stride, pads), (x, w)


def _conv2d_bwd(stride, pads, res, g):
    x, w = res
    if _winograd(x, w, stride, pads):
        w_t = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
        return (_call(_WINOGRAD, g, w_t, x.shape, x.dtype, stride, pads),
                _call(_WINOGRAD_WEIGHT_GRAD, x, g, w.shape, w.dtype, stride, pads))
    return (_call(_DATA_GRAD, g, w, x.shape, x.dtype, stride, pads),
            _call(_WEIGHT_GRAD, x, g, w.shape, w.dtype, stride, pads))


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def onednn_args(conv: nnx.Conv, x) -> tuple[int, tuple[int, int]] | None:
    """(stride, pads) if oneDNN can run this convolution of x as configured, else None."""
    kernel_size = tuple(conv.kernel_size)
    strides = conv.strides if isinstance(conv.strides, (tuple, list)) else (conv.strides or 1,) * 2
    plain = (x.ndim == 4 and len(kernel_size) == 2 and len(set(strides)) == 1 and conv.feature_group_count == 1
             and conv.mask is None and conv.preferred_element_type is None
             and all(d in (None, 1, (1, 1)) for d in (conv.input_dilation, conv.kernel_dilation))
             and isinstance(conv.padding, str) and conv.padding in ("SAME", "VALID"))
    if not plain:
        return None
    pads = jax.lax.padtype_to_pads(x.shape[1:3], kernel_size, tuple(strides), conv.padding)
    if pads[0] != pads[1]:
        return None
    return int(strides[0]), (int(pads[0][0]), int(pads[0][1]))


class Conv(nnx.Conv):
    """nnx.Conv (same parameters, initialisation and results to float rounding) computed by oneDNN where
    `use_onednn()` holds and the convolution is a plain 2-D one in a dtype of `onednn_dtypes()`; by XLA otherwise."""

    def __call__(self, inputs):
        args = onednn_args(self, inputs) if use_onednn() else None
        if args is None:
            return super().__call__(inputs)
        x, kernel, bias = self.promote_dtype((inputs, self.kernel[...], self.bias[...] if self.bias is not None
                                              else None), dtype=self.dtype)
        if x.dtype not in onednn_dtypes() or kernel.dtype != x.dtype:
            return super().__call__(inputs)
        y = conv2d(x, kernel, *args)
        return y + bias if bias is not None else y
