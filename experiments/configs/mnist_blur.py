"""Blurring diffusion on MNIST (Hoogeboom & Salimans 2023) with the default run's UNet and budget.

The blur sigma_B(t) = 20 sin^2(pi t / 2) pixels and d_t >= 0.001 are the paper's; eps prediction. The noise
schedule is the default run's linear one (alpha_bar_T = 4e-5, like the paper's log-SNR-bounded cosine), not
`schedules.cosine`: its last step (beta clipped at 0.999, alpha_bar_T = 2e-9) divides eps_hat's error by
alpha_T ~ 5e-5, and blurring diffusion samples without clipping x0_hat, so those samples blow up.
Samples: the ancestral sampler over 250 of the 1000 timesteps.
Train: python -m experiments.train_ddpm --config experiments/configs/mnist_blur.py
"""

from experiments.configs import mnist


def get_config():
    c = mnist.first_recipe(mnist.get_config())
    c.name = "mnist_blur"
    c.diffusion = dict(process="blurring", schedule="linear", num_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                       prediction="eps", blur_sigma_max=20.0, min_scale=0.001)
    c.train.sample_sampler = ""   # the process's own
    return c
