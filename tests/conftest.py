"""Every test process simulates 8 CPU devices, so the data-parallel paths run for real."""

import gc
import os

# The suite compiles some hundred programs that each run for milliseconds, so compiling is most of its time:
# LLVM's optimisation level 0 halves it (the tiny config's train step: 14.9 -> 7-8 s; the suite on a 2-core
# Xeon: 19 min -> 11 min). At that level XLA's older elemental emitters compile and run faster than its MLIR
# fusion emitters (tiny train step on 8 devices: compile 14 -> 7-9 s, step 0.62 -> 0.31-0.39 s; the suite from an
# empty cache 15 min 56 s -> 13 min 15 s). The entry points and benchmarks that users run keep XLA's defaults.
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8",
                                    "--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"])
# Tests and the entry points they start (which inherit this environment) build the same programs many times:
# reuse every compilation, the small ones too (a repeated tiny CLI training run: 12.7 s with programs that
# compile in 0.2 s or more cached, 10.7 s with all of them).
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
# The entry points the tests start run under glibc's malloc on every machine: no restart with tcmalloc where it
# happens to be installed (tests/test_runtime.py checks that restart).
os.environ["DIFFJAX_TCMALLOC"] = "0"

import jax  # noqa: E402
import pytest  # noqa: E402

from diffjax import runtime  # noqa: E402

# The entry points' CPU tuning, so that tests compute what the entry points they start compute.
runtime.configure()

from experiments.configs import tiny  # noqa: E402


def pytest_collection_finish(session):
    """Every test module is imported: move the objects of jax, flax, Orbax and the rest to the garbage
    collector's permanent generation, so that its full collections no longer walk them (as `experiments.cli`
    does), and collect less often: tracing makes millions of short-lived objects. Garbage collection in
    test_train, test_samplers and test_restore in one process: 27.6 s -> 5.5 s."""
    gc.freeze()
    gc.set_threshold(10_000, 20, 50)


@pytest.fixture(scope="session")
def optimised():
    """`jax.jit` at XLA's default optimisation level (3), for a long-running program (a sampler run for 1000 steps
    on thousands of images), which level 0 makes 3-4x slower to run."""
    return lambda fn: jax.jit(fn, compiler_options={"xla_backend_optimization_level": 3})


@pytest.fixture
def tiny_cfg():
    return tiny.get_config()


@pytest.fixture(scope="session")
def devices():
    assert len(jax.devices()) == 8, "tests expect 8 simulated CPU devices"
    return jax.devices()


@pytest.fixture(scope="session")
def digit_cache(tmp_path_factory):
    """One cache directory of the digit classifier for the whole session, shared by the xdist workers (the
    directory above each worker's base temp is common to all), holding the classifier trained once: the first
    worker trains it under a file lock, the others wait for it and read it (in-process and CLI tests)."""
    import fcntl

    from diffjax import data, digit_score

    root = tmp_path_factory.getbasetemp()
    path = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "digit_cache"
    path.mkdir(exist_ok=True)
    with open(path.parent / "digit_cache.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        digit_score.load_or_train(path, data.mnist_sample("train"), data.mnist_sample("test"))
    return path
