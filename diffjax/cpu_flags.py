"""Project-wide XLA CPU defaults, applied before JAX initialises its backend.

This jaxlib routes every convolution through YNNPACK, which is slow on the CPUs we
measured; excluding single convolutions from YNN fusion roughly doubles the UNet train
step (see `python -m experiments.bench`). A flag the user already set in `XLA_FLAGS`
always wins.
"""

import os

CPU_DEFAULTS = {"--xla_cpu_experimental_ynn_fusion_type": "-individual_convolution"}


def apply_defaults(env=os.environ) -> None:
    """Append each default to `XLA_FLAGS` unless the user set that flag already."""
    flags = env.get("XLA_FLAGS", "")
    present = {f.split("=")[0] for f in flags.split()}
    extra = [f"{k}={v}" for k, v in CPU_DEFAULTS.items() if k not in present]
    if extra:
        env["XLA_FLAGS"] = " ".join([flags, *extra]).strip()
