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
