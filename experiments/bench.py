"""Throughput benchmark: python -m experiments.bench [--config reference] [--out DIR].

For the named config it measures, in one run per CPU setting (a subprocess each, since XLA
and glibc read their settings once): the jitted train step (images/s, XLA's FLOP count,
GFLOP/s), DDIM sampling (images/s), this machine's f32 matmul peak and the step's fraction of
it, and jitted Perona-Malik diffusion (1000 MNIST-sized images x 50 steps, images/s). The FLOP count is that of
direct convolutions, so with Winograd's (4x fewer multiplications in its 3x3 convolutions) GFLOP/s and the
fraction of peak are direct-equivalent rates and can exceed 1; the "direct convolutions" row gives the real one.
Settings (`diffjax.runtime`, `diffjax.nn.conv`): the project's defaults (oneDNN's convolutions, Winograd's
for 3x3 float32 ones, on one CPU device; YNNPACK off for XLA's single convolutions; tcmalloc preloaded where it
is installed, else glibc's malloc tuned to reuse freed buffers), the same with oneDNN's direct convolutions only,
with XLA's convolutions, the tuned glibc malloc where tcmalloc would be the default, glibc's default malloc, and
XLA's and glibc's own defaults (XLA's convolutions).
"""

import ctypes.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from absl import flags

from diffjax import runtime
from experiments import cli

flags.DEFINE_string("config", "reference", "config name in experiments/configs (mnist, cifar10, reference, ...)")
flags.DEFINE_integer("batch_size", 0, "train batch size (0: the config's)", lower_bound=0)
flags.DEFINE_integer("train_steps", 5, "timed train steps (after one warm-up)", lower_bound=1)
flags.DEFINE_integer("sample_batch", 32, "images per DDIM sampling call", lower_bound=1)
flags.DEFINE_integer("steps", 50, "DDIM sampler steps", lower_bound=1)
flags.DEFINE_string("out", "checkpoints/bench", "output directory (bench_<config>.json)")
flags.DEFINE_bool("worker", False, "internal: measure in this process and print JSON")

GLIBC = {"DIFFJAX_TCMALLOC": "0", "DIFFJAX_TUNE_MALLOC": "0"}
SETTINGS = {  # name: (XLA flags appended, environment)
    "project default": ("", {}),
    "direct convolutions": ("", {"DIFFJAX_WINOGRAD": "0"}),
    "XLA's convolutions": ("", {"DIFFJAX_ONEDNN": "0"}),
    "glibc malloc": ("", GLIBC),
    "XLA and glibc default": ("--xla_cpu_experimental_ynn_fusion_type=+individual_convolution "
                              "--xla_cpu_prefer_vector_width=256", {**GLIBC, "DIFFJAX_ONEDNN": "0"}),
}


def settings(find_library=ctypes.util.find_library) -> dict:
    """SETTINGS, plus the tuned glibc malloc where the default preloads tcmalloc (the library is installed)."""
    if not find_library(runtime.TCMALLOC):
        return SETTINGS
    default, *rest = SETTINGS.items()
    return dict([default, ("tuned glibc malloc", ("", {"DIFFJAX_TCMALLOC": "0"})), *rest])


def worker_env(xla_flags: str, extra_env: dict, base=os.environ) -> dict:
    """The environment of one setting's worker: `base` with `xla_flags` appended and `extra_env`; a setting with
    `DIFFJAX_TCMALLOC=0` also drops the malloc library that this process (restarted with tcmalloc) or the user
    preloaded, so that its worker runs on glibc's malloc."""
    env = dict(base, XLA_FLAGS=" ".join([base.get("XLA_FLAGS", ""), xla_flags]).strip(), **extra_env)
    preloaded = runtime.preloaded_allocator(env)
    if env.get("DIFFJAX_TCMALLOC") == "0" and preloaded:
        env["LD_PRELOAD"] = " ".join(e for e in runtime.preload_entries(env) if e != preloaded)
    return env


def _best_time(fn, reps: int) -> float:
    """Best wall time of `reps` calls of fn (which must block until its result is ready)."""
    best = float("inf")
    for _ in range(reps):
        tic = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tic)
    return best


def matmul_peak_gflops(n: int = 2048, reps: int = 5) -> float:
    """f32 GFLOP/s of an n x n x n matmul (2 n^3 FLOPs), best of `reps`."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    return 2 * n**3 / _best_time(lambda: f(a).block_until_ready(), reps) / 1e9


def measure(cfg, steps: int, sample_batch: int, sample_steps: int) -> dict:
    """Train-step and DDIM throughput of `cfg` on synthetic uint8 data, with XLA's FLOP count."""
    import jax
    import numpy as np

    from diffjax import generate, parallel, processes, train
    from diffjax.nn import conv

    mesh = parallel.make_mesh()
    graphdef, state, _ = train.init_state(cfg, mesh)
    shape = (cfg.data.image_size, cfg.data.image_size, cfg.data.channels)
    rng = np.random.default_rng(0)
    images = jax.device_put(rng.integers(0, 256, (1024, *shape), dtype=np.uint8), parallel.replicated(mesh))
    labels = jax.device_put(rng.integers(0, 10, (1024,), dtype=np.int32), parallel.replicated(mesh))
    step = train.make_train_step(graphdef, cfg, mesh)
    compiled = counted = step.lower(state, images, labels).compile()
    if conv.use_onednn():  # XLA counts no FLOPs in oneDNN's custom calls: count those of its own convolutions
        with conv.xla_convolutions():
            counted = train.make_train_step(graphdef, cfg, mesh).lower(state, images, labels).compile()
    cost = counted.cost_analysis()
    flops = float((cost[0] if isinstance(cost, list) else cost)["flops"])
    holder = [state]

    def one_step():
        holder[0], m = compiled(holder[0], images, labels)
        m["loss"].block_until_ready()

    one_step()
    step_s = _best_time(one_step, steps)
    sample = lambda: generate.sample(graphdef, state.ema_params, processes.noise_schedule(cfg),  # noqa: E731
                                     jax.random.PRNGKey(0), sample_batch, shape, mesh=mesh, steps=sample_steps,
                                     batch_size=sample_batch)
    sample()
    sample_s = _best_time(sample, 1)
    b = cfg.train.batch_size
    return {"train_images_per_s": b / step_s, "train_step_s": step_s, "flops_per_step": flops,
            "achieved_gflops": flops / step_s / 1e9, "ddim_images_per_s": sample_batch / sample_s,
            "ddim_steps": sample_steps, "batch_size": b}


def perona_malik_images_per_s(num: int = 1000, steps: int = 50) -> float:
    """Jitted Perona-Malik on `num` 28x28 MNIST-sized images, `steps` explicit steps each."""
    import jax

    from diffjax import classical

    x = jax.random.uniform(jax.random.PRNGKey(0), (num, 28, 28, 1))
    run = lambda: classical.perona_malik(x, 0.1, steps=steps).block_until_ready()  # noqa: E731
    run()
    return num / _best_time(run, 3)


def _worker(f) -> None:
    import importlib

    from diffjax.nn import conv

    cfg = importlib.import_module(f"experiments.configs.{f.config}").get_config()
    if f.batch_size:
        cfg.train.batch_size = f.batch_size
    peak = matmul_peak_gflops()
    result = measure(cfg, f.train_steps, f.sample_batch, f.steps)
    result.update(matmul_peak_gflops=peak, fraction_of_peak=result["achieved_gflops"] / peak,
                  perona_malik_images_per_s=perona_malik_images_per_s(), xla_flags=os.environ.get("XLA_FLAGS", ""),
                  malloc_tuned=runtime.malloc_tuned, allocator=runtime.preloaded_allocator() or "glibc",
                  convolutions=("XLA" if not conv.use_onednn() else
                                "oneDNN, Winograd 3x3" if conv.winograd_enabled() else "oneDNN direct"))
    print("BENCH " + json.dumps(result))


def _table(config: str, results: dict) -> str:
    rows = ["| setting | convolutions | allocator | train img/s | GFLOP/step (direct) | GFLOP/s | "
            f"matmul peak GFLOP/s | fraction of peak | DDIM-{next(iter(results.values()))['ddim_steps']} img/s | "
            "Perona-Malik img/s (50 steps) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        allocator = "glibc, tuned" if r["malloc_tuned"] else os.path.basename(r["allocator"])
        rows.append(f"| {name} | {r['convolutions']} | {allocator} | {r['train_images_per_s']:.1f} | "
                    f"{r['flops_per_step'] / 1e9:.1f} | {r['achieved_gflops']:.1f} | {r['matmul_peak_gflops']:.1f} | "
                    f"{r['fraction_of_peak']:.3f} | {r['ddim_images_per_s']:.1f} | "
                    f"{r['perona_malik_images_per_s']:.0f} |")
    return f"config {config}, batch {next(iter(results.values()))['batch_size']}\n" + "\n".join(rows)


def main(argv):
    del argv
    f = flags.FLAGS
    if f.worker:
        return _worker(f)
    results = {}
    todo = settings()
    for i, (name, (xla_flags, extra_env)) in enumerate(todo.items()):
        print(f"[{i + 1}/{len(todo)}] {name}: compiling and timing the train step, DDIM-{f.steps} and Perona-Malik "
              f"in a fresh process ...", file=sys.stderr, flush=True)
        tic = time.perf_counter()
        env = worker_env(xla_flags, extra_env)
        args = [a for a in sys.argv[1:] if not a.startswith("--out")] + ["--worker"]
        p = subprocess.run([sys.executable, "-m", "experiments.bench", *args], env=env, capture_output=True,
                           text=True)
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("BENCH ")]
        if p.returncode or not line:
            raise RuntimeError(f"bench worker for {name!r} failed:\n{p.stderr[-2000:]}")
        results[name] = r = json.loads(line[0][6:])
        print(f"      {time.perf_counter() - tic:.0f} s: train {r['train_images_per_s']:.1f} images/s "
              f"({r['train_images_per_s'] / r['batch_size']:.2f} steps/s), DDIM {r['ddim_images_per_s']:.1f} "
              f"images/s, {r['fraction_of_peak']:.3f} of the matmul peak", file=sys.stderr, flush=True)
    print(_table(f.config, results))
    from diffjax import files

    out = Path(f.out) / f"bench_{f.config}.json"
    files.write_text(out, json.dumps({"config": f.config, "results": results}, indent=2))
    print(f"-> {out}")


def console_main():
    cli.run(main)


if __name__ == "__main__":
    console_main()
