"""diffjax: diffusion models in JAX — training, sampling, restoration, classical baselines."""

from diffjax import cpu_flags as _cpu_flags

_cpu_flags.apply_defaults()
