"""diffjax: diffusion models in JAX — training, sampling, restoration, classical baselines."""

from diffjax import cpu_defaults as _cpu_defaults

_cpu_defaults.apply_defaults()
