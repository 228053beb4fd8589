"""A seconds-long config for smoke tests: offline data, a few hundred parameters' worth of UNet."""

from experiments.configs import mnist


def get_config():
    c = mnist.get_config()
    c.name = "tiny"
    c.data.dataset = "mnist_sample"
    c.model.update(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(14,), groups=4)
    c.diffusion.num_timesteps = 20
    c.optim.warmup_steps = 2
    c.train.update(steps=4, batch_size=8, log_every=1, sample_every=2, ckpt_every=2, num_sample_images=8,
                   sample_steps=5)
    return c
