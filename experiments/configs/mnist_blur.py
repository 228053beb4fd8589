"""Blurring diffusion on MNIST (Hoogeboom & Salimans 2023) with the default run's UNet and budget.

The paper's choices: a cosine noise schedule, the blur sigma_B(t) = 20 sin^2(pi t / 2) pixels, d_t >= 0.001,
eps prediction. Samples: the ancestral sampler over 250 of the 1000 timesteps.
Train: python -m experiments.train_ddpm --config experiments/configs/mnist_blur.py
"""

from experiments.configs import mnist


def get_config():
    c = mnist.get_config()
    c.name = "mnist_blur"
    c.diffusion = dict(process="blurring", schedule="cosine", num_timesteps=1000, prediction="eps",
                       blur_sigma_max=20.0, min_scale=0.001)
    return c
