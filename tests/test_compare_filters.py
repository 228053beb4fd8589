import numpy as np
import pytest
from PIL import Image

from diffjax.images import load_folder
from diffjax.compare import best_table, versus_table


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


def test_versus_table_gives_the_paired_margin_of_the_best_diffusion_row_over_the_best_classical_row():
    row = lambda m, per, **kw: dict(degradation="blur", level=1.0, method=m, psnr=float(np.mean(per)),  # noqa: E731
                                    psnr_se=0.1, ssim=0.9, ssim_se=0.01, params={}, psnr_per_image=per, **kw)
    results = [row("wiener", [20.0, 22.0, 24.0]), row("tv_deconv", [21.0, 23.0, 25.0]),
               row("ddnm (sample)", [21.5, 23.0, 26.5], nfe=20), row("ddnm (mean of 8)", [20.0, 20.0, 20.0], nfe=20)]
    line = [ln for ln in versus_table(results).splitlines() if ln.startswith("| blur")][0]
    diff = np.array([0.5, 0.0, 1.5])
    assert "| tv_deconv | 23.00" in line and "| ddnm (sample) (20) | 23.67" in line
    assert line.endswith(f"| +{diff.mean():.2f} ± {diff.std(ddof=1) / np.sqrt(3):.2f} |")
