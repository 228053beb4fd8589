"""Inverse heat dissipation on MNIST (Rissanen et al. 2023) with the default run's UNet and budget.

K = 100 blur levels, sigma_k log-spaced from 0.5 to 20 pixels (the paper's MNIST schedule). Images are in
[-1, 1] here, [0, 1] in the paper: its noise stds 0.01 (training) and 0.01 (sampling, delta) are 0.02 here.
Train: python -m experiments.train_ddpm --config experiments/configs/mnist_heat.py
"""

from experiments.configs import mnist


def get_config():
    c = mnist.first_recipe(mnist.get_config())
    c.name = "mnist_heat"
    c.diffusion = dict(process="ihdm", num_timesteps=100, blur_sigma_min=0.5, blur_sigma_max=20.0,
                       train_noise=0.02, sample_noise=0.02)
    c.train.update(sample_sampler="", sample_steps=100)   # IHDM always visits all K levels; kept <= K for the config check
    return c
