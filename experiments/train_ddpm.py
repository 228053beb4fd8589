"""Train a DDPM noise predictor: python -m experiments.train_ddpm [--config FILE] [--out DIR].

Override any config field: --config.train.steps=2000 --config.data.dataset=mnist_sample.
Running again on the same --out resumes from its last checkpoint.
"""

from absl import flags
from ml_collections import config_flags

from diffjax import train
from experiments import cli

config_flags.DEFINE_config_file("config", str(cli.CONFIGS / "mnist.py"), "config file (ml_collections)")
flags.DEFINE_string("out", None, "run directory written, and resumed (default: checkpoints/<config name>)")
flags.DEFINE_bool("progress", True, "show a progress bar")


def main(argv):
    del argv
    cfg = flags.FLAGS.config
    workdir = flags.FLAGS.out or cli.default_run_dir(cfg)
    state = train.run(cfg, workdir, progress=flags.FLAGS.progress)
    print(f"done: step {int(state.step)} in {workdir} (samples in {workdir}/samples)")


def console_main():
    cli.run(main)


if __name__ == "__main__":
    console_main()
