"""Train a DDPM noise predictor: python -m experiments.train_ddpm [--config FILE] [--workdir DIR].

Override any config field: --config.train.steps=2000 --config.data.dataset=mnist_sample.
Running again on the same --workdir resumes from its last checkpoint.
"""

from absl import flags
from ml_collections import config_flags

from diffjax import train
from experiments import cli

config_flags.DEFINE_config_file("config", str(cli.CONFIGS / "mnist.py"), "config file (ml_collections)")
flags.DEFINE_string("workdir", None, "run directory (default: checkpoints/<config name>)")
flags.DEFINE_bool("progress", True, "show a progress bar")


def main(argv):
    del argv
    cfg = flags.FLAGS.config
    workdir = flags.FLAGS.workdir or cli.default_workdir(cfg)
    state = train.run(cfg, workdir, progress=flags.FLAGS.progress)
    print(f"done: step {int(state.step)} in {workdir} (samples in {workdir}/samples)")


if __name__ == "__main__":
    cli.run(main)
