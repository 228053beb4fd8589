import numpy as np
import pytest

from diffjax import schedules


def test_linear_matches_numpy_formula():
    s = schedules.linear(1000, 1e-4, 0.02)
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(s.betas, betas, rtol=1e-6)
    alpha_bar = np.array([np.prod(1 - betas[: t + 1]) for t in range(1000)])
    np.testing.assert_allclose(s.alphas_cumprod, alpha_bar, rtol=1e-5)
    assert s.betas.dtype == np.float32 and s.alphas_cumprod.shape == (1000,)


def test_cosine_alpha_bar_is_squared_cosine_ratio():
    T, s_off = 1000, 0.008
    s = schedules.cosine(T, s=s_off)
    f = lambda t: np.cos((t / T + s_off) / (1 + s_off) * np.pi / 2) ** 2  # noqa: E731
    expected = f(np.arange(1, T + 1)) / f(0)
    unclipped = np.asarray(s.betas) < 0.999
    np.testing.assert_allclose(np.asarray(s.alphas_cumprod)[unclipped], expected[unclipped], rtol=1e-4, atol=1e-7)
    assert np.asarray(s.betas).max() <= 0.999 + 1e-7 and not unclipped.all()  # the last betas are clipped
    assert np.all(np.diff(np.asarray(s.alphas_cumprod)) < 0)


@pytest.mark.parametrize("bad", [[0.0, 0.1], [0.5, 1.0], [[0.1]]])
def test_invalid_betas_rejected(bad):
    with pytest.raises(ValueError, match="betas"):
        schedules.from_betas(bad)


def test_unknown_schedule_names_the_choices():
    with pytest.raises(ValueError, match="cosine"):
        schedules.get("quadratic", 10)


def test_reference_run_schedule_is_the_ddpm_linear_one():
    """processes.noise_schedule(cfg) is the run's schedule; the reference network's is Ho et al.'s linear
    1e-4..0.02."""
    from diffjax import processes
    from experiments.configs import reference

    s = processes.noise_schedule(reference.get_config())
    np.testing.assert_allclose(s.betas, np.linspace(1e-4, 0.02, 1000), rtol=1e-6)
