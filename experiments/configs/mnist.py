"""Default MNIST config: a small DDPM UNet that gives clear digits in under 20 CPU minutes."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "mnist"
    c.seed = 0
    c.data = dict(dataset="mnist", image_size=28, channels=1, random_flip=False)
    c.model = dict(ch=16, ch_mult=(1, 2, 4), num_res_blocks=1, attn_resolutions=(7,), attn_middle=True,
                   dropout=0.1, groups=8, num_classes=0, dtype="float32")
    # process "gaussian" (the default when unset); the heat processes: mnist_heat.py, mnist_blur.py
    c.diffusion = dict(schedule="linear", num_timesteps=1000, beta_start=1e-4, beta_end=0.02, prediction="eps",
                       min_snr_gamma=0.0)  # > 0: min-SNR-gamma loss weights (Hang et al. 2023)
    c.optim = dict(lr=1e-3, warmup_steps=200, decay="constant", grad_clip=1.0, b1=0.9, b2=0.999,
                   weight_decay=0.0, ema_decay=0.995)
    # Grids use stochastic DDIM (eta=1, 250 steps): for a model trained this briefly it gives clean
    # digits where deterministic DDIM-50 leaves speckled backgrounds.
    c.train = dict(steps=3500, batch_size=32, p_uncond=0.0, log_every=50, sample_every=1750, ckpt_every=500,
                   num_sample_images=64, sample_steps=250, sample_eta=1.0,
                   eval_every=0, eval_num=500)  # eval_every > 0: the sample score (FD) in scores.jsonl
    return c
