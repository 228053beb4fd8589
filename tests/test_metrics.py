import jax
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from diffjax import metrics


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_and_ssim_equal_scikit_image(channels):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    x = np.asarray(jax.random.uniform(k1, (3, 28, 28, channels)))
    y = np.clip(x + 0.1 * np.asarray(jax.random.normal(k2, x.shape)), 0, 1)
    ours_psnr, ours_ssim = np.asarray(metrics.psnr(y, x)), np.asarray(metrics.ssim(y, x))
    for i in range(3):
        ref = structural_similarity(x[i], y[i], data_range=1.0, channel_axis=-1)
        assert abs(ours_ssim[i] - ref) < 1e-4, (ours_ssim[i], ref)
        assert abs(ours_psnr[i] - peak_signal_noise_ratio(x[i], y[i], data_range=1.0)) < 1e-4


def test_edginess_is_sum_of_absolute_forward_differences():
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, :, 2:] = 1.0  # one vertical edge of height 4
    assert float(metrics.edginess(x)[0]) == 4.0
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (2, 5, 6, 3)))
    ref = np.abs(np.diff(x, axis=2)).sum((1, 2, 3)) + np.abs(np.diff(x, axis=1)).sum((1, 2, 3))
    np.testing.assert_allclose(metrics.edginess(x), ref, rtol=1e-5)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_of_a_shifted_copy_is_the_squared_shift():
    f = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (500, 16))) @ np.diag(np.linspace(0.5, 2, 16))
    stats = metrics.gaussian_stats(f)
    assert abs(metrics.frechet_distance(*stats, *stats)) < 1e-9
    shift = np.linspace(-1, 1, 16)
    assert abs(metrics.frechet_distance(*stats, *metrics.gaussian_stats(f + shift)) - shift @ shift) < 1e-9


def test_frechet_distance_equals_the_closed_form_for_known_gaussians():
    """Isotropic: d (a - b)^2. General, non-commuting covariances: against scipy's matrix square root of C1 C2."""
    from scipy import linalg

    assert abs(metrics.frechet_distance(np.zeros(8), 4 * np.eye(8), np.ones(8), np.eye(8)) - (8 + 8 * (2 - 1) ** 2)) \
        < 1e-9
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 6, 6))
    c1, c2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=(2, 6))
    ref = (mu1 - mu2) @ (mu1 - mu2) + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert abs(metrics.frechet_distance(mu1, c1, mu2, c2) - ref) < 1e-8 * abs(ref)


def test_gaussian_stats_needs_two_feature_vectors():
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.gaussian_stats(np.zeros((1, 4)))
