import importlib
import pkgutil

import pytest

import experiments.configs
from diffjax import config_check, train

SHIPPED = sorted(m.name for m in pkgutil.iter_modules(experiments.configs.__path__))


def test_every_shipped_config_is_listed():
    assert {"mnist", "mnist_long", "tiny", "mnist_cond", "mnist_heat", "mnist_blur", "cifar10",
            "cifar10_heat"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_pass_on_one_and_eight_devices(name):
    cfg = importlib.import_module(f"experiments.configs.{name}").get_config()
    config_check.check(cfg, 1)
    if name != "tiny":
        config_check.check(cfg, 8)


BAD = [
    ("train.batch_size", 0, "must be an integer >= 1"),
    ("train.steps", 0, "must be an integer >= 1"),
    ("optim.lr", 0.0, "must be a number in (0.0, inf)"),
    ("optim.lr", float("nan"), "must be a number in (0.0, inf)"),
    ("optim.ema_decay", 1.0, "must be a number in [0.0, 1.0)"),
    ("optim.decay", "linear", "must be one of ('constant', 'cosine')"),
    ("train.p_uncond", 1.5, "must be a number in [0.0, 1.0]"),
    ("diffusion.schedule", "quadratic", "must be one of ('linear', 'cosine')"),
    ("diffusion.prediction", "score", "must be one of ('eps', 'x0', 'v')"),
    ("diffusion.min_snr_gamma", -1.0, "must be a number in [0.0, inf)"),
    ("diffusion.beta_end", 1e-5, "must be a number in [0.0001, 1.0)"),
    ("data.dataset", "imagenet", "must be one of"),
    ("data.image_size", 27, "must be divisible by 2^1 = 2"),
    ("model.groups", 3, "must divide every channel count of the UNet [8, 16]"),
    ("model.attn_resolutions", (7,), "[7] is not a resolution of this UNet; choose from [28, 14]"),
    ("model.dtype", "float8", "must be one of ('float32', 'bfloat16', 'float16')"),
    ("train.sample_steps", 21, "must be an integer >= 1 and <= 20"),
    ("train.sample_eta", -0.5, "must be a number in [0.0, inf)"),
    ("model.ch_mult", (), "must be a non-empty tuple of integers >= 1"),
]


@pytest.mark.parametrize("field,value,message", BAD, ids=[f"{f}={v}" for f, v, _ in BAD])
def test_bad_value_is_one_clear_error_and_leaves_no_run_directory(tiny_cfg, tmp_path, field, value, message):
    section, key = field.split(".")
    with tiny_cfg.unlocked():
        tiny_cfg[section][key] = value
    with pytest.raises(ValueError) as info:
        train.run(tiny_cfg, tmp_path / "run", progress=False)
    text = str(info.value)
    assert text.startswith(f"config.{field} = {value!r}: ") and message in text and "\n" not in text
    assert not (tmp_path / "run").exists()


def test_batch_not_divisible_by_the_devices_names_them(tiny_cfg):
    tiny_cfg.train.batch_size = 12
    with pytest.raises(ValueError, match=r"config.train.batch_size = 12: must be divisible by the 8 devices"):
        config_check.check(tiny_cfg, 8)


def test_missing_field_says_where_to_start(tiny_cfg):
    with tiny_cfg.unlocked():
        del tiny_cfg.optim["lr"]
    with pytest.raises(ValueError, match="config.optim.lr is missing"):
        config_check.check(tiny_cfg)



def test_min_snr_weighting_is_refused_for_the_blurring_process():
    cfg = importlib.import_module("experiments.configs.mnist_blur").get_config()
    config_check.check(cfg)
    cfg.diffusion.min_snr_gamma = 5.0
    with pytest.raises(ValueError, match=r"^config.diffusion.min_snr_gamma = 5.0: must be 0: only the gaussian"):
        config_check.check(cfg)
