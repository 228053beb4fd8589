"""CIFAR-10 exactly as in DDPM (Ho et al. 2020, Appendix B): 35.7M parameters, for accelerators."""

from experiments.configs import mnist


def get_config():
    c = mnist.first_recipe(mnist.get_config())
    c.name = "cifar10"
    c.data.update(dataset="cifar10", image_size=32, channels=3, random_flip=True)
    c.model.update(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1, groups=32)
    c.optim.update(lr=2e-4, warmup_steps=5000, grad_clip=1.0, ema_decay=0.9999)
    c.train.update(steps=800_000, batch_size=128, log_every=100, sample_every=10_000, ckpt_every=5_000)
    return c
