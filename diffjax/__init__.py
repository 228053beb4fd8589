"""diffjax: diffusion models in JAX: training, sampling, restoration, classical baselines.

Importing it changes nothing in the process; the CPU tuning of the entry points is `diffjax.runtime.configure()`.
"""
