"""Inverse heat dissipation on CIFAR-10 at the paper's sizes (Rissanen et al. 2023, App. B), for accelerators.

K = 200 levels, sigma_k from 0.5 to 24 pixels; noise stds 0.01 (training) and 0.013 (sampling) on [0, 1]
images, doubled here for [-1, 1]. UNet: base 128, mults (1, 2, 2, 2), 4 residual blocks, attention at 8x8
and 4x4, dropout 0.1; Adam 2e-4, batch 128, EMA 0.999.
"""

from experiments.configs import cifar10


def get_config():
    c = cifar10.get_config()
    c.name = "cifar10_heat"
    c.diffusion = dict(process="ihdm", num_timesteps=200, blur_sigma_min=0.5, blur_sigma_max=24.0,
                       train_noise=0.02, sample_noise=0.026)
    c.model.update(num_res_blocks=4, attn_resolutions=(8, 4), dropout=0.1)
    c.optim.update(ema_decay=0.999)
    c.train.update(sample_sampler="", sample_steps=200)
    return c
