"""Every test process simulates 8 CPU devices, so the data-parallel paths run for real."""

import os

os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"])

import jax  # noqa: E402
import pytest  # noqa: E402

# Tests build the same few programs many times (each run re-jits its step): reuse compilations.
jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

from experiments.configs import tiny  # noqa: E402


@pytest.fixture
def tiny_cfg():
    return tiny.get_config()


@pytest.fixture(scope="session")
def devices():
    assert len(jax.devices()) == 8, "tests expect 8 simulated CPU devices"
    return jax.devices()


@pytest.fixture(scope="session")
def digit_cache(tmp_path_factory):
    """One cache directory of the digit classifier for the whole session (in-process and CLI tests)."""
    return tmp_path_factory.mktemp("digit_cache")
