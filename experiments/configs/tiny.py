"""A seconds-long config for smoke tests: offline data, a few hundred parameters' worth of UNet.

`--config=experiments/configs/tiny.py:ihdm` (or `:blurring`) gives the same UNet under a heat process.
"""

from experiments.configs import mnist, mnist_blur, mnist_heat

BASES = {"gaussian": mnist, "ihdm": mnist_heat, "blurring": mnist_blur}


def get_config(process: str = "gaussian"):
    if process not in BASES:
        raise ValueError(f"tiny.py:{process}: choose a process from {sorted(BASES)}")
    c = mnist.first_recipe(BASES[process].get_config())
    c.name = "tiny" if process == "gaussian" else f"tiny_{process}"
    c.data.dataset = "mnist_sample"
    c.model.update(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(14,), groups=4)
    c.diffusion.num_timesteps = 20
    c.optim.update(warmup_steps=2, lr=3e-3)  # every test that trains shares these: one compiled step per process
    c.train.update(steps=4, batch_size=16, log_every=1, sample_every=2, ckpt_every=2, num_sample_images=8,
                   sample_steps=5)
    return c
