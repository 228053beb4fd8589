"""Score a trained run's samples: python -m experiments.evaluate --run RUN [--sampler S --steps N --num 1000].

Samples `num` digits, scores them by the Fréchet distance to the real test digits in the features of the
project's digit classifier (`diffjax.digit_score`, trained on the train split at first use and cached),
with the floors that say what the number means. RGB runs (CIFAR-10) are scored by FID against the test
split, in the features of Inception-v3 read from the local file --inception (`diffjax.inception`), with the
FID of as many real train images as the floor. Adds the result to RUN/eval.json under
"<sampler>_<steps>steps[_eta<eta>]_n<num>_seed<seed>" (with NFE, seconds, images/s, the checkpoint step). Also
writes the samples' grid next to it, RUN/eval/<key>.png.
"""

from pathlib import Path

from absl import flags

from diffjax import digit_score, samplers
from diffjax.evaluation import EVAL_FILE, evaluate
from experiments import cli

flags.DEFINE_string("run", None, "run directory written by experiments.train_ddpm", required=True)
flags.DEFINE_enum("sampler", None, sorted(samplers.SAMPLERS), "sampler (default: the run's process's)")
flags.DEFINE_integer("steps", None, "sampler steps (default: the sampler's own, e.g. heun 10, dpmpp_2m 20, ddim 50; "
                     "DDPM and IHDM take all their levels)", lower_bound=1)
flags.DEFINE_float("eta", 0.0, "DDIM eta", lower_bound=0.0)
flags.DEFINE_float("guidance", 0.0, "classifier-free guidance weight (class-conditional runs: the classes are "
                   "asked in turn and the classifier's accuracy on them is reported)", lower_bound=0.0)
flags.DEFINE_integer("num", 1000, "number of samples to score (the FD needs at least 2)", lower_bound=2)
flags.DEFINE_integer("batch_size", 250, "images per sampler call", lower_bound=1)
flags.DEFINE_integer("seed", 0, "sampling seed")
flags.DEFINE_string("inception", None, "Inception-v3 weights (.npz of pytorch-fid's state dict) for the FID of RGB "
                    "runs; see the README")
flags.DEFINE_string("cache_dir", str(digit_score.DEFAULT_CACHE), "where the digit classifier is cached "
                    "(default: $DIFFJAX_CACHE or ~/.cache/diffjax)")

def main(argv):
    del argv
    f = flags.FLAGS
    key, r = evaluate(f.run, f.sampler, f.steps, f.eta, f.num, f.seed, f.batch_size, f.cache_dir,
                      guidance=f.guidance, inception_weights=f.inception)
    if "fid" in r:
        print(f"{key}: FID {r['fid']:.2f} (floor: {r['num']} real train images {r['fid_train_vs_test']:.2f}); "
              f"{r['nfe']} network calls per image, {r['images_per_s']} images/s -> {Path(f.run) / EVAL_FILE}")
        return
    print(f"{key}: FD {r['fd']:.2f} (floors: real train digits {r['fd_train_vs_test']:.2f}, test digits blurred "
          f"1 px {r['fd_blurred_1px_vs_test']:.1f}), class entropy {r['class_entropy']:.3f} nats (test digits "
          f"{r['test_class_entropy']:.3f}, max 2.303); classifier test accuracy {r['classifier_test_accuracy']:.3f}; "
          + (f"samples of the asked class {r['class_accuracy']:.3f}; " if "class_accuracy" in r else "")
          + f"{r['nfe']} network calls per image, {r['images_per_s']} images/s "
          f"-> {Path(f.run) / EVAL_FILE}")


def console_main():
    cli.run(main)


if __name__ == "__main__":
    console_main()
