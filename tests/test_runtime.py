import os
import subprocess
import sys

import pytest

from diffjax import runtime

GLIBC_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                                reason="glibc only")


def _run(code: str, **env) -> str:
    """stdout of `python -c code` with `env` and none of this process's malloc settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout


@GLIBC_ONLY
def test_the_tuning_runs_computations_on_the_calling_thread_and_opting_out_leaves_dispatch_asynchronous():
    # the buffers of a computation come from the main arena only if it runs on the main thread (module docstring)
    code = "import diffjax.runtime, jax; diffjax.runtime.configure(); print(jax.config.values['jax_cpu_enable_async_dispatch'])"
    assert _run(code).strip() == "False"
    assert _run(code, DIFFJAX_TUNE_MALLOC="0").strip() == "True"


def test_xla_defaults_are_appended_unless_the_user_set_the_flag():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    runtime.apply_xla_defaults(env, avx512=False)
    assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=8",
                                        "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"]
    env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"}
    runtime.apply_xla_defaults(env, avx512=False)
    assert env["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
    env = {}
    runtime.apply_xla_defaults(env, avx512=True)
    assert env["XLA_FLAGS"].split() == ["--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
                                        "--xla_cpu_prefer_vector_width=512"]
    env = {"XLA_FLAGS": "--xla_cpu_prefer_vector_width=256"}
    runtime.apply_xla_defaults(env, avx512=True)
    assert "--xla_cpu_prefer_vector_width=512" not in env["XLA_FLAGS"]


def test_avx512_is_read_off_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n\nprocessor\t: 1\n")
    assert runtime.has_avx512(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_vnni_missing\n")
    assert not runtime.has_avx512(info)
    assert not runtime.has_avx512(tmp_path / "absent")


TC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


def _installed(name):
    return TC if name == runtime.TCMALLOC else None


def test_a_preloaded_allocator_is_named_and_left_untuned():
    assert runtime.preloaded_allocator({"LD_PRELOAD": TC}) == TC
    assert runtime.preloaded_allocator({"LD_PRELOAD": f"libfoo.so:{TC}"}) == TC
    assert runtime.preloaded_allocator({"LD_PRELOAD": "libjemalloc.so.2 libbar.so"}) == "libjemalloc.so.2"
    assert runtime.preloaded_allocator({"LD_PRELOAD": "/opt/malloc_hooks/libbar.so"}) is None
    assert runtime.preloaded_allocator({}) is None
    assert not runtime.tune_malloc({"LD_PRELOAD": TC})


@pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD is Linux's")
def test_tcmalloc_is_preloaded_where_installed_unless_turned_off_or_another_allocator_is_preloaded():
    assert runtime.tcmalloc_to_preload({}, _installed) == TC
    assert runtime.tcmalloc_to_preload({"LD_PRELOAD": "libfoo.so"}, _installed) == TC
    assert runtime.tcmalloc_to_preload({}, lambda name: None) is None  # not installed
    assert runtime.tcmalloc_to_preload({"DIFFJAX_TCMALLOC": "0"}, _installed) is None
    assert runtime.tcmalloc_to_preload({"LD_PRELOAD": TC}, _installed) is None  # restarted already
    assert runtime.tcmalloc_to_preload({"LD_PRELOAD": "libjemalloc.so.2"}, _installed) is None


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
    assert runtime.preloaded_allocator(tuned) is None  # so the worker tunes glibc's malloc


SNAPSHOT = r"""
import json, os, sys
import jax
from orbax.checkpoint._src.serialization.type_handler_registry import GLOBAL_TYPE_HANDLER_REGISTRY as registry
def snapshot():
    return {"environ": dict(os.environ), "jax": {k: repr(v) for k, v in jax.config.values.items()},
            "orbax": [(id(f), id(h)) for f, h in registry._type_registry]}
before = snapshot()
if sys.argv[1] == "import":
    import importlib, pkgutil, diffjax
    for m in pkgutil.walk_packages(diffjax.__path__, "diffjax."):
        importlib.import_module(m.name)
print(json.dumps(before == snapshot()), json.dumps(snapshot()["environ"]), json.dumps(snapshot()["jax"]))
"""


def test_importing_every_diffjax_module_changes_no_environment_variable_jax_option_or_orbax_handler():
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    run = lambda how: subprocess.run([sys.executable, "-c", SNAPSHOT, how], env=env, capture_output=True,  # noqa
                                     text=True, check=True).stdout.split(" ", 1)
    unchanged, imported = run("import")
    assert unchanged == "true"
    assert run("none")[1] == imported   # the same as a process that never imported diffjax
    # and the explicit call does change them (so the snapshot can see a change)
    changed = subprocess.run([sys.executable, "-c", SNAPSHOT.replace("print(", "import diffjax.runtime; "
                              "diffjax.runtime.configure({}); print(").replace("configure({})", "configure()"),
                              "none"], env=env, capture_output=True, text=True, check=True).stdout
    assert changed.split(" ", 1)[0] == "false"
