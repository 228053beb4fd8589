"""Samplers driven by the exact eps predictor of a known data distribution, no network.

For x0 ~ sum_k w_k N(m_k, s^2) per pixel (iid), x_t ~ sum_k w_k N(sqrt(ab) m_k, v), v = ab s^2 + 1 - ab,
and the MMSE noise prediction is eps*(x_t, t) = -sqrt(1 - ab) grad log p(x_t)
= sqrt(1 - ab) sum_k r_k(x_t) (x_t - sqrt(ab) m_k) / v, r_k the posterior responsibilities.
With this eps, DDPM (T steps) and DDIM must give back the data distribution.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import heat, parallel, samplers, schedules

S = schedules.linear(1000)
N = 256  # images of 4x4 pixels: 4,096 iid samples per run


def exact_eps(weights, means, std):
    w, m = jnp.asarray(weights), jnp.asarray(means)

    def eps(x_t, t):
        ab = S.alphas_cumprod[t].reshape(-1, 1, 1, 1, 1)
        v = ab * std**2 + 1 - ab
        d = x_t[..., None] - jnp.sqrt(ab) * m                                 # [B, H, W, C, K]
        r = jax.nn.softmax(jnp.log(w) - d**2 / (2 * v), axis=-1)
        return jnp.sqrt(1 - ab[..., 0]) * jnp.sum(r * d, -1) / v[..., 0]

    return eps


SAMPLER_CASES = {
    "ddpm_small": lambda f, k: samplers.ddpm_sample(f, S, k, (N, 4, 4, 1), clip_x0=False),
    "ddpm_large": lambda f, k: samplers.ddpm_sample(f, S, k, (N, 4, 4, 1), variance="fixed_large", clip_x0=False),
    "ddim_200_eta0": lambda f, k: samplers.ddim_sample(f, S, k, (N, 4, 4, 1), num_steps=200, clip_x0=False),
    "ddim_500_eta1": lambda f, k: samplers.ddim_sample(f, S, k, (N, 4, 4, 1), num_steps=500, eta=1.0,
                                                       clip_x0=False),
    **{f"{name}_20": (lambda f, k, name=name: samplers.SAMPLERS[name](f, S, k, (N, 4, 4, 1), num_steps=20,
                                                                      clip_x0=False))
       for name in ("dpmpp_2m", "dpmpp_3m", "heun")},
}


@pytest.mark.parametrize("case", sorted(SAMPLER_CASES))
def test_single_gaussian_mean_and_std_recovered(case):
    # 4,096 samples: standard errors 0.25/64 = 0.004 (mean) and 0.003 (std); the tolerances allow
    # ~4 standard errors plus the time-discretisation bias of skipped steps, which shrinks the spread
    # (measured std: DDIM eta=0 0.228 at 50 steps, 0.246 at 200; eta=1 0.209 at 50, 0.239 at 500).
    x = np.asarray(SAMPLER_CASES[case](exact_eps([1.0], [0.3], 0.25), jax.random.PRNGKey(0))).ravel()
    assert abs(x.mean() - 0.3) < 0.02, x.mean()
    assert abs(x.std() - 0.25) < 0.02, x.std()


@pytest.mark.parametrize("case", sorted(SAMPLER_CASES))
def test_two_gaussian_mixture_weights_means_and_stds_recovered(case):
    # Modes at -0.5 and 0.5 with std 0.1, weights 0.3 / 0.7. Standard error of the weight:
    # sqrt(0.21 / 4096) = 0.007; tolerance 0.04 also covers discretisation bias of the sampler.
    x = np.asarray(SAMPLER_CASES[case](exact_eps([0.3, 0.7], [-0.5, 0.5], 0.1), jax.random.PRNGKey(1))).ravel()
    left = x < 0
    assert abs(left.mean() - 0.3) < 0.04, left.mean()
    assert abs(x[left].mean() + 0.5) < 0.03 and abs(x[~left].mean() - 0.5) < 0.03
    assert abs(x[left].std() - 0.1) < 0.03 and abs(x[~left].std() - 0.1) < 0.03


def _process_and_kwargs(name):
    """Each sampler's process object and arguments, for the contract test."""
    s = schedules.linear(50)
    if name == "blurring":
        return heat.blurring(s, 3.0), {"num_steps": 10, "clip_x0": True}
    if name == "ihdm":
        p = heat.ihdm(10, 0.5, 4.0, 0.01)
        prior = heat.ihdm_prior(p, jax.random.uniform(jax.random.PRNGKey(5), (5, 6, 6, 3), minval=-1, maxval=1))
        return p, {"prior": prior, "delta": 0.05}
    return s, {"num_steps": 10, "eta": 1.0} if name == "ddim" else {}


@pytest.mark.parametrize("name", sorted(samplers.SAMPLERS))
def test_sampler_contract_shape_determinism_frames(name):
    s, kwargs = _process_and_kwargs(name)
    eps = lambda x_t, t: 0.1 * x_t * (-1 if name == "ihdm" else 1)  # noqa: E731  (IHDM: a shrinking residual)
    fn = samplers.SAMPLERS[name]
    a = fn(eps, s, jax.random.PRNGKey(0), (8, 6, 6, 3), **kwargs)
    b = fn(eps, s, jax.random.PRNGKey(0), (8, 6, 6, 3), **kwargs)
    c = fn(eps, s, jax.random.PRNGKey(1), (8, 6, 6, 3), **kwargs)
    assert a.shape == (8, 6, 6, 3) and a.dtype == jnp.float32 and np.isfinite(np.asarray(a)).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert float(jnp.abs(a).max()) <= 1.0 + 1e-5  # x0_hat clipped (IHDM: shrunk), no noise on the last step (DCT round-off)
    x, frames = fn(eps, s, jax.random.PRNGKey(0), (8, 6, 6, 3), num_frames=4, **kwargs)
    assert frames.shape == (4, 8, 6, 6, 3)
    np.testing.assert_allclose(frames[-1], x, atol=1e-6)  # the last frame is the final sample
    np.testing.assert_allclose(x, a, atol=1e-6)


def test_ddim_discretisation_error_shrinks_with_more_steps():
    f = exact_eps([1.0], [0.3], 0.25)
    err = [abs(np.asarray(samplers.ddim_sample(f, S, jax.random.PRNGKey(0), (N, 4, 4, 1), num_steps=n,
                                               clip_x0=False)).std() - 0.25) for n in (10, 50, 1000)]
    assert err[0] > err[1] > err[2] and err[2] < 0.01, err


@pytest.mark.parametrize("name", ["dpmpp_2m", "dpmpp_3m", "heun"])
def test_fast_solvers_beat_ddim_at_equal_network_calls_and_converge_faster(name):
    """The probability-flow ODE from the same x_T, solved to reference accuracy (Heun, 1,000 log-SNR steps), on
    the two-mode mixture. At 10 and 20 steps each solver is closer to it than DDIM with as many network calls,
    and its error shrinks faster than DDIM's first-order rate (error ratio 20 / 10 steps: 0.57 for DDIM,
    about 0.25 for second order, measured 0.33 (2M), 0.23 (3M), 0.27 (Heun))."""
    f, key, shape = exact_eps([0.3, 0.7], [-0.5, 0.5], 0.1), jax.random.PRNGKey(1), (N, 4, 4, 1)
    ref = np.asarray(samplers.heun_sample(f, S, key, shape, num_steps=1000, clip_x0=False))
    rms = lambda x: float(np.sqrt(np.mean((np.asarray(x) - ref) ** 2)))  # noqa: E731
    err = {}
    for steps in (10, 20):
        err[steps] = rms(samplers.SAMPLERS[name](f, S, key, shape, num_steps=steps, clip_x0=False))
        ddim = rms(samplers.ddim_sample(f, S, key, shape, num_steps=samplers.nfe(name, steps, 1000), clip_x0=False))
        assert err[steps] < ddim, (steps, err[steps], ddim)
    assert err[20] < 0.4 * err[10], err


def test_logsnr_timesteps_are_distinct_decreasing_and_evenly_spaced_in_log_snr():
    for n in (2, 10, 50, 1000):
        t = samplers.logsnr_timesteps(S, n)
        assert len(t) == n and t[0] == 999 and t[-1] == 0 and (np.diff(t) < 0).all()
    ab = np.asarray(S.alphas_cumprod, np.float64)
    lam = 0.5 * np.log(ab / (1 - ab))[samplers.logsnr_timesteps(S, 10)]
    np.testing.assert_allclose(np.diff(lam), (lam[-1] - lam[0]) / 9, rtol=0.05)  # integer rounding only


def test_sharded_sampling_equals_single_device(devices):
    eps = exact_eps([1.0], [0.3], 0.25)
    s = schedules.linear(100)
    one = samplers.ddim_sample(eps, s, jax.random.PRNGKey(0), (16, 4, 4, 1), num_steps=20, eta=1.0)
    sharding = parallel.batch_sharded(parallel.make_mesh(devices))
    many = samplers.ddim_sample(eps, s, jax.random.PRNGKey(0), (16, 4, 4, 1), num_steps=20, eta=1.0,
                                out_sharding=sharding)
    assert len(many.sharding.device_set) == 8
    np.testing.assert_allclose(many, one, atol=1e-5)


def test_ddim_eta1_all_steps_equals_ddpm_fixed_small():
    """With every timestep and eta = 1, DDIM's update is DDPM's posterior step (Song et al. 2021, Sec. 4.1)."""
    s = schedules.linear(30)
    eps = exact_eps([0.5, 0.5], [-0.4, 0.4], 0.2)
    a = samplers.ddpm_sample(eps, s, jax.random.PRNGKey(3), (4, 4, 4, 1))
    b = samplers.ddim_sample(eps, s, jax.random.PRNGKey(3), (4, 4, 4, 1), num_steps=30, eta=1.0)
    np.testing.assert_allclose(a, b, atol=5e-4)  # the two formulas round differently in float32


@pytest.mark.parametrize("steps", [0, 1001])
def test_ddim_steps_out_of_range_rejected(steps):
    with pytest.raises(ValueError, match="steps must be in"):
        samplers.ddim_sample(lambda x, t: x, S, jax.random.PRNGKey(0), (1, 2, 2, 1), num_steps=steps)


def test_unknown_variance_rejected():
    with pytest.raises(ValueError, match="fixed_small"):
        samplers.ddpm_sample(lambda x, t: x, S, jax.random.PRNGKey(0), (1, 2, 2, 1), variance="learned")


def test_a_sampler_registered_in_one_place_appears_in_sampling_nfe_processes_and_the_cli(monkeypatch, tiny_cfg):
    """One function and one registry entry: generate.sample runs it, nfe counts it, the process offers it, the
    output name describes it, and the sample and evaluate commands accept it."""
    import subprocess
    import sys
    from pathlib import Path

    from flax import nnx

    from diffjax import files, generate, processes, train

    def halve_sample(eps_fn, s, key, shape, num_steps=3, *, num_frames=0, out_sharding=None):
        x = jax.random.normal(key, shape)
        for t in np.linspace(s.num_timesteps - 1, 0, num_steps).astype(np.int32):
            x = x - 0.5 * eps_fn(x, jnp.full((shape[0],), t))
        return x

    monkeypatch.setitem(samplers.SAMPLERS, "halve", samplers.Sampler(halve_sample, "gaussian", 3,
                                                                      nfe=lambda steps, t: steps))
    assert "halve" in processes.samplers_of("gaussian") and processes.sampler_for(tiny_cfg, "halve") == "halve"
    assert samplers.nfe("halve", 4, 1000) == 4 and samplers.settings("halve", 4, 0.0, 1000) == {"steps": 4, "eta": None}
    assert files.output_name(sampler="halve", **samplers.settings("halve", 4, 0.0, 1000), seed=0) == "halve_4steps_seed0"
    graphdef, params = nnx.split(train.make_model(tiny_cfg, jax.random.PRNGKey(0)))
    x = generate.sample(graphdef, params, processes.make(tiny_cfg), jax.random.PRNGKey(1), 4, (28, 28, 1),
                        sampler="halve", steps=2)
    assert x.shape == (4, 28, 28, 1) and np.isfinite(x).all()
    code = ("from diffjax import samplers; samplers.SAMPLERS['halve'] = samplers.SAMPLERS['ddim']; "
            "import importlib, sys; m = importlib.import_module('experiments.' + sys.argv[1]); "
            "from absl import flags; print('halve' in flags.FLAGS['sampler'].parser.enum_values)")
    root = Path(__file__).resolve().parents[1]
    for command in ("sample", "evaluate"):
        out = subprocess.run([sys.executable, "-c", code, command], cwd=root, capture_output=True, text=True,
                             check=True).stdout.split()
        assert out[-1] == "True"
