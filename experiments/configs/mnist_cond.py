"""Class-conditional MNIST: the default run's UNet with a label embedding, trained with the label dropped
(replaced by the null label) 10% of the time, so one network gives eps(x_t, t, y) and eps(x_t, t, null)
for classifier-free guidance (Ho & Salimans 2022): `experiments.sample --label 3 --guidance 2`."""

from experiments.configs import mnist


def get_config():
    c = mnist.first_recipe(mnist.get_config())
    c.name = "mnist_cond"
    c.model.num_classes = 10
    c.train.p_uncond = 0.1
    return c
