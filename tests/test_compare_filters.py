import numpy as np
import pytest
from PIL import Image

from diffjax.images import load_folder
from experiments.compare_filters import best_table


def test_folder_of_rgb_and_grayscale_pngs(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "b.png")
    x = load_folder(tmp_path)
    assert x.shape == (2, 12, 16, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], rgb / 255.0, atol=1e-6)
    (tmp_path / "a.png").unlink()
    assert load_folder(tmp_path).shape == (1, 12, 16, 1)


def test_folder_with_mixed_sizes_rejected(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match="different sizes"):
        load_folder(tmp_path)


def test_best_table_picks_highest_psnr_per_degradation_and_level():
    results = [dict(degradation="gaussian", level=0.1, method=m, psnr=p, psnr_se=0.1, ssim=0.5, ssim_se=0.01,
                    params={}) for m, p in (("heat", 20.0), ("bm3d", 25.0))]
    table = best_table(results)
    assert "| gaussian | 0.1 | bm3d | 25.00 ± 0.10 | 0.500 ± 0.010 | {} | heat | 20.00" in table
