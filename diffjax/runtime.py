"""CPU runtime settings for the entry points: XLA flags, the allocator, JAX's CPU dispatch.

Nothing here runs when diffjax is imported. The entry points (`experiments.cli.run`) call `configure()` before
their first computation; a program or notebook that wants the same CPU speed calls `diffjax.runtime.configure()`
itself, before JAX starts its backend. What each setting does (measurements: docs/performance.md):

- XLA flags: single convolutions are kept out of XLA's YNNPACK fusions
  (`--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`), and on AVX-512 CPUs XLA's LLVM code uses
  512-bit vectors (`--xla_cpu_prefer_vector_width=512`; reductions then sum in another order, so the last bits
  differ from those of 256-bit code). A flag already set in `XLA_FLAGS` wins.
- glibc's malloc keeps freed large blocks for reuse (mallopt M_MMAP_MAX = 0, M_TRIM_THRESHOLD = -1) instead of
  mapping fresh pages for every XLA temporary buffer, which then faults them all in again. This holds only in
  glibc's main arena, so JAX's asynchronous CPU dispatch is turned off with it: computations run on the calling
  thread. The process keeps its peak heap until it exits. Skipped off glibc, when the user configures malloc
  (`MALLOC_*`, `GLIBC_TUNABLES`), preloads another allocator, or sets `DIFFJAX_TUNE_MALLOC=0`.
- tcmalloc, where installed (Debian: libtcmalloc-minimal4), needs neither malloc setting; a preloaded library
  takes effect only when a process starts, so the entry points restart themselves once with it in `LD_PRELOAD`
  (`restart_with_tcmalloc`; `DIFFJAX_TCMALLOC=0` turns this off).
"""

import ctypes
import ctypes.util
import os
import sys

TCMALLOC = "tcmalloc_minimal"
XLA_DEFAULTS = {"--xla_cpu_experimental_ynn_fusion_type": "-individual_convolution"}
AVX512_DEFAULTS = {"--xla_cpu_prefer_vector_width": "512"}
# mallopt parameters (glibc malloc.h): M_MMAP_MAX, M_TRIM_THRESHOLD (-1: never trim).
MALLOPT_DEFAULTS = ((-4, 0), (-1, -1))


def has_avx512(cpuinfo="/proc/cpuinfo") -> bool:
    """True if the CPU's flags (Linux `/proc/cpuinfo`) include avx512f."""
    try:
        with open(cpuinfo) as f:
            return any(line.startswith("flags") and "avx512f" in line.split() for line in f)
    except OSError:
        return False


def apply_xla_defaults(env=os.environ, avx512: bool | None = None) -> None:
    """Append each default to `XLA_FLAGS` unless the user set that flag already (`avx512`: default, this CPU's)."""
    flags = env.get("XLA_FLAGS", "")
    present = {f.split("=")[0] for f in flags.split()}
    if avx512 is None:
        avx512 = has_avx512()
    defaults = {**XLA_DEFAULTS, **(AVX512_DEFAULTS if avx512 else {})}
    extra = [f"{k}={v}" for k, v in defaults.items() if k not in present]
    if extra:
        env["XLA_FLAGS"] = " ".join([flags, *extra]).strip()


def preload_entries(env=os.environ) -> list[str]:
    """The libraries in `LD_PRELOAD` (separated by spaces or colons, as ld.so reads it)."""
    return env.get("LD_PRELOAD", "").replace(":", " ").split()


def preloaded_allocator(env=os.environ) -> str | None:
    """The malloc library that `LD_PRELOAD` puts in place of glibc's (tcmalloc, jemalloc, ...), if any."""
    return next((e for e in preload_entries(env) if "malloc" in os.path.basename(e)), None)


def tune_malloc(env=os.environ) -> bool:
    """Set glibc's malloc to keep and reuse freed large blocks in its main arena (see above); True if it was set."""
    if (sys.platform != "linux" or env.get("DIFFJAX_TUNE_MALLOC", "1") == "0" or "GLIBC_TUNABLES" in env
            or any(k.startswith("MALLOC_") for k in env) or preloaded_allocator(env)):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing
    except (OSError, AttributeError, TypeError):
        return False
    return all(libc.mallopt(param, value) == 1 for param, value in MALLOPT_DEFAULTS)


def tcmalloc_to_preload(env=os.environ, find_library=ctypes.util.find_library) -> str | None:
    """tcmalloc's library if this process should restart with it preloaded: on Linux where it is installed,
    unless `DIFFJAX_TCMALLOC=0`, another allocator is preloaded, or it is in `LD_PRELOAD` already."""
    if sys.platform != "linux" or env.get("DIFFJAX_TCMALLOC", "1") == "0" or preloaded_allocator(env):
        return None
    lib = find_library(TCMALLOC)
    return lib if lib and lib not in preload_entries(env) else None


def restart_with_tcmalloc(env=os.environ, find_library=ctypes.util.find_library) -> None:
    """Replaces this process by the same command (`sys.orig_argv`) with `tcmalloc_to_preload()` appended to
    `LD_PRELOAD`, saying so on stderr; returns if there is nothing to preload. Call it before any work starts."""
    lib = tcmalloc_to_preload(env, find_library)
    if lib:
        print(f"diffjax: restarting with {lib} preloaded, faster than glibc's malloc for XLA:CPU "
              "(DIFFJAX_TCMALLOC=0 turns this off)", file=sys.stderr, flush=True)
        preload = " ".join([*preload_entries(env), lib])
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**env, "LD_PRELOAD": preload})


malloc_tuned = False  # whether `configure` tuned glibc's malloc in this process


def configure(env=os.environ) -> None:
    """XLA flags; glibc's malloc tuned, and with it JAX's CPU computations run on the calling thread.
    Call it before the first JAX computation (the XLA flags are read when the backend starts)."""
    global malloc_tuned
    apply_xla_defaults(env)
    malloc_tuned = tune_malloc(env)
    if malloc_tuned:
        import jax
        jax.config.update("jax_cpu_enable_async_dispatch", False)
