import os
import subprocess
import sys

import pytest

from diffjax import cpu_defaults

# Page faults of each of the last 10 of 40 runs of a jitted program writing a new 64 MB array each time
# (released arrays are freed asynchronously, so the reused heap first grows to hold a dozen or more of them).
FAULTS = r"""
import resource
import diffjax
import jax, jax.numpy as jnp
f = jax.jit(lambda x: x * 2 + 1)
x = jnp.ones((4096, 4096), jnp.float32)
faults = []
for _ in range(40):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
print(*faults[-10:])
"""


def _faults(**env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    p = subprocess.run([sys.executable, "-c", FAULTS], env={**clean, **env}, capture_output=True, text=True,
                       check=True)
    return [int(n) for n in p.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="glibc only")
def test_tuned_malloc_reuses_freed_buffers_instead_of_faulting_fresh_pages_in():
    pages = 4096 * 4096 * 4 // os.sysconf("SC_PAGE_SIZE")
    fresh = lambda faults: sum(n >= 0.9 * pages for n in faults)  # noqa: E731  runs that mapped a new array
    assert fresh(_faults(DIFFJAX_TUNE_MALLOC="0")) == 10  # glibc's default: every output on new pages
    assert fresh(_faults()) <= 3
    assert fresh(_faults(MALLOC_ARENA_MAX="4")) == 10  # the user's malloc settings win


def test_xla_defaults_are_appended_unless_the_user_set_the_flag():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    cpu_defaults.apply_xla_defaults(env)
    assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=8",
                                        "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"]
    env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"}
    cpu_defaults.apply_xla_defaults(env)
    assert env["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
