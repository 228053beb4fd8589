"""The cross-framework reference network: 28x28x1, base 64, mults (1, 2, 2), attention at 7x7.

6,469,889 parameters, batch 128, AdamW: the network whose train step the bench compares
against other implementations on the same machine.
"""

from experiments.configs import mnist


def get_config():
    c = mnist.first_recipe(mnist.get_config())
    c.name = "reference"
    c.data.dataset = "mnist_sample"
    c.model.update(ch=64, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(7,), attn_middle=True,
                   dropout=0.1, groups=8)
    c.optim.update(lr=2e-4, warmup_steps=0)
    c.train.update(batch_size=128)
    return c
