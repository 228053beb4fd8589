"""Default MNIST config: a small DDPM UNet, 1,400 steps of batch 32 (about 9 minutes of training on a 2-core
CPU at 2.5 steps/s), sized so the whole default run fits 12 minutes there and 20 on a CPU 1.6x slower.

Picked by the sample score over 3 sampling seeds (README, "The default run, picked by this score" and "The
12-minute default"): v prediction (Salimans & Ho 2022), lr 2e-3 with cosine decay to 0, EMA 0.995 (a 2,500-step
ablation), no dropout (a 1,200-step one).
`mnist_long.py` is the 2,500-step run with dropout 0.1 that the restoration and solver tables were measured with.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "mnist"
    c.seed = 0
    c.data = dict(dataset="mnist", path="", image_size=28, channels=1, random_flip=False)  # path: cifar-10-python.tar.gz
    c.model = dict(ch=16, ch_mult=(1, 2, 4), num_res_blocks=1, attn_resolutions=(7,), attn_middle=True,
                   dropout=0.0, groups=8, num_classes=0, dtype="float32")
    # process "gaussian" (the default when unset); the heat processes: mnist_heat.py, mnist_blur.py
    c.diffusion = dict(schedule="linear", num_timesteps=1000, beta_start=1e-4, beta_end=0.02, prediction="v",
                       min_snr_gamma=0.0)  # > 0: min-SNR-gamma loss weights (Hang et al. 2023)
    c.optim = dict(lr=2e-3, warmup_steps=200, decay="cosine", grad_clip=1.0, b1=0.9, b2=0.999,
                   weight_decay=0.0, ema_decay=0.995)
    # Grids use stochastic DDIM (eta=1, 250 steps): for a model trained this briefly it gives clean
    # digits where deterministic DDIM-50 leaves speckled backgrounds. sample_sampler "": the process's default.
    c.train = dict(sample_sampler="ddim", steps=1400, batch_size=32, p_uncond=0.0, log_every=50, sample_every=1400, ckpt_every=500,
                   ckpt_minutes=10.0,  # also a checkpoint every 10 minutes of wall clock
                   num_sample_images=64, sample_steps=250, sample_eta=1.0,
                   eval_every=0, eval_num=500)  # eval_every > 0: the sample score (FD) in scores.jsonl
    return c


def first_recipe(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Pins the default run's training as it was before the ablations in the README (eps target, constant
    lr 1e-3 after warm-up, dropout 0.1, 3,500 steps): the configs derived from this one were measured with it."""
    c.model.dropout = 0.1
    c.optim.update(lr=1e-3, decay="constant")
    c.train.update(steps=3500, sample_every=1750)
    if "prediction" in c.diffusion:  # the Gaussian and blurring processes; IHDM regresses the less-blurred image
        c.diffusion.prediction = "eps"
    return c
