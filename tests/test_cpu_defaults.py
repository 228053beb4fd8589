import os
import subprocess
import sys

import pytest

from diffjax import cpu_defaults

# Page faults of each of the last 10 of 20 runs of a jitted program writing a new 64 MB array each time.
# PJRT frees a released array on another thread, so after each run we wait until malloc's bytes in use
# (mallinfo2: heap + mmap'd) are back within half an output array of what they were before the first run:
# under load the frees lag, and without the wait the reused heap would grow by however many arrays were in
# flight. Even so, under load a small allocation now and then lands in a freed output's block and splits it
# (2 of the last 10 runs mapped a new array in one run of the suite), so the tuned allocator must reuse the
# freed block in at least half of the runs, not in all.
FAULTS = r"""
import ctypes, resource, time
import diffjax
import jax, jax.numpy as jnp

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
def in_use():
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd

f = jax.jit(lambda x: x * 2 + 1)
x = jnp.ones((4096, 4096), jnp.float32).block_until_ready()
before = in_use()
faults = []
for _ in range(20):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
    deadline = time.monotonic() + 30
    while in_use() > before + x.nbytes // 2 and time.monotonic() < deadline:
        time.sleep(0.001)
print(*faults[-10:])
"""


GLIBC_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                                reason="glibc only")


def _run(code: str, **env) -> str:
    """stdout of `python -c code` with `env` and none of this process's malloc settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout


def _faults(**env):
    return [int(n) for n in _run(FAULTS, **env).split()]


@GLIBC_ONLY
def test_tuned_malloc_reuses_freed_buffers_instead_of_faulting_fresh_pages_in():
    pages = 4096 * 4096 * 4 // os.sysconf("SC_PAGE_SIZE")
    fresh = lambda faults: sum(n >= 0.9 * pages for n in faults)  # noqa: E731  runs that mapped a new array
    assert fresh(_faults(DIFFJAX_TUNE_MALLOC="0")) == 10  # glibc's default: every output on new pages
    assert fresh(_faults()) <= 5
    assert fresh(_faults(MALLOC_ARENA_MAX="4")) == 10  # the user's malloc settings win


@GLIBC_ONLY
def test_the_tuning_runs_computations_on_the_calling_thread_and_opting_out_leaves_dispatch_asynchronous():
    # the buffers of a computation come from the main arena only if it runs on the main thread (module docstring)
    code = "import diffjax, jax; print(jax.config.values['jax_cpu_enable_async_dispatch'])"
    assert _run(code).strip() == "False"
    assert _run(code, DIFFJAX_TUNE_MALLOC="0").strip() == "True"


def test_xla_defaults_are_appended_unless_the_user_set_the_flag():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    cpu_defaults.apply_xla_defaults(env, avx512=False)
    assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=8",
                                        "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"]
    env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"}
    cpu_defaults.apply_xla_defaults(env, avx512=False)
    assert env["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
    env = {}
    cpu_defaults.apply_xla_defaults(env, avx512=True)
    assert env["XLA_FLAGS"].split() == ["--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
                                        "--xla_cpu_prefer_vector_width=512"]
    env = {"XLA_FLAGS": "--xla_cpu_prefer_vector_width=256"}
    cpu_defaults.apply_xla_defaults(env, avx512=True)
    assert "--xla_cpu_prefer_vector_width=512" not in env["XLA_FLAGS"]


def test_avx512_is_read_off_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n\nprocessor\t: 1\n")
    assert cpu_defaults.has_avx512(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_vnni_missing\n")
    assert not cpu_defaults.has_avx512(info)
    assert not cpu_defaults.has_avx512(tmp_path / "absent")


TC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


def _installed(name):
    return TC if name == cpu_defaults.TCMALLOC else None


def test_a_preloaded_allocator_is_named_and_left_untuned():
    assert cpu_defaults.preloaded_allocator({"LD_PRELOAD": TC}) == TC
    assert cpu_defaults.preloaded_allocator({"LD_PRELOAD": f"libfoo.so:{TC}"}) == TC
    assert cpu_defaults.preloaded_allocator({"LD_PRELOAD": "libjemalloc.so.2 libbar.so"}) == "libjemalloc.so.2"
    assert cpu_defaults.preloaded_allocator({"LD_PRELOAD": "/opt/malloc_hooks/libbar.so"}) is None
    assert cpu_defaults.preloaded_allocator({}) is None
    assert not cpu_defaults.tune_malloc({"LD_PRELOAD": TC})


@pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD is Linux's")
def test_tcmalloc_is_preloaded_where_installed_unless_turned_off_or_another_allocator_is_preloaded():
    assert cpu_defaults.tcmalloc_to_preload({}, _installed) == TC
    assert cpu_defaults.tcmalloc_to_preload({"LD_PRELOAD": "libfoo.so"}, _installed) == TC
    assert cpu_defaults.tcmalloc_to_preload({}, lambda name: None) is None  # not installed
    assert cpu_defaults.tcmalloc_to_preload({"DIFFJAX_TCMALLOC": "0"}, _installed) is None
    assert cpu_defaults.tcmalloc_to_preload({"LD_PRELOAD": TC}, _installed) is None  # restarted already
    assert cpu_defaults.tcmalloc_to_preload({"LD_PRELOAD": "libjemalloc.so.2"}, _installed) is None


# An entry point whose "tcmalloc" is glibc's own libc.so.6 (preloading it changes nothing): it must restart once
# with the library appended to LD_PRELOAD, say so on stderr, and then run its main.
RESTART = r"""
import ctypes.util, os, sys
find = ctypes.util.find_library
ctypes.util.find_library = lambda name: "libc.so.6" if name == "tcmalloc_minimal" else find(name)
from experiments import cli
cli.run(lambda argv: print("main", argv[1:], os.environ["LD_PRELOAD"]))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD is Linux's")
def test_an_entry_point_restarts_once_with_tcmalloc_preloaded_and_the_same_arguments():
    env = {k: v for k, v in os.environ.items() if k not in ("DIFFJAX_TCMALLOC", "LD_PRELOAD")}
    p = subprocess.run([sys.executable, "-c", RESTART, "extra"], env={**env, "LD_PRELOAD": "libm.so.6"},
                       capture_output=True, text=True, check=True)
    assert p.stdout.splitlines() == ["main ['extra'] libm.so.6 libc.so.6"]
    assert p.stderr.count("restarting with libc.so.6 preloaded") == 1
    off = subprocess.run([sys.executable, "-c", RESTART], env={**env, "DIFFJAX_TCMALLOC": "0", "LD_PRELOAD": "x"},
                         capture_output=True, text=True, check=True)
    assert off.stdout.splitlines() == ["main [] x"] and "restarting" not in off.stderr


def test_the_bench_compares_tcmalloc_with_the_tuned_glibc_malloc_only_where_it_is_installed():
    from experiments import bench

    assert bench.settings(lambda name: None) == bench.SETTINGS
    found = bench.settings(_installed)
    assert list(found) == ["project default", "tuned glibc malloc", *list(bench.SETTINGS)[1:]]
    assert found["tuned glibc malloc"] == ("", {"DIFFJAX_TCMALLOC": "0"})
    assert {k: found[k] for k in bench.SETTINGS} == bench.SETTINGS
    # the allocator rows run on glibc; the convolution rows differ from the default in their convolutions alone
    assert found["direct convolutions"] == ("", {"DIFFJAX_WINOGRAD": "0"})
    assert found["XLA's convolutions"] == ("", {"DIFFJAX_ONEDNN": "0"})
    assert found["XLA and glibc default"][1]["DIFFJAX_ONEDNN"] == "0"
    assert all(env.get("DIFFJAX_TCMALLOC") == "0" for name, (_, env) in found.items()
               if name not in ("project default", "direct convolutions", "XLA's convolutions"))


def test_the_bench_runs_its_glibc_settings_without_the_preloaded_allocator():
    from experiments import bench

    base = {"LD_PRELOAD": f"libfoo.so {TC}", "XLA_FLAGS": "--a=1"}
    default, tuned = bench.worker_env("", {}, base), bench.worker_env("--b=2", {"DIFFJAX_TCMALLOC": "0"}, base)
    assert default["LD_PRELOAD"] == f"libfoo.so {TC}" and default["XLA_FLAGS"] == "--a=1"
    assert tuned["LD_PRELOAD"] == "libfoo.so" and tuned["XLA_FLAGS"] == "--a=1 --b=2"
    assert cpu_defaults.preloaded_allocator(tuned) is None  # so the worker tunes glibc's malloc
