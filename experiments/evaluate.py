"""Score a trained run's samples: python -m experiments.evaluate --workdir RUN [--sampler S --steps N --num 1000].

Samples `num` digits, scores them by the Fréchet distance to the real test digits in the features of the
project's digit classifier (`diffjax.digit_score`, trained on the train split at first use and cached),
with the floors that say what the number means. RGB runs (CIFAR-10) are scored by FID against the test
split, in the features of Inception-v3 read from the local file --inception (`diffjax.inception`), with the
FID of as many real train images as the floor. Adds the result to RUN/eval.json under
"<sampler>_<steps>_n<num>_seed<seed>" (with NFE, seconds, images/s, the checkpoint step). Also writes the
samples' grid next to it, RUN/eval/<key>.png.
"""

import json
import time
from pathlib import Path

import jax
import numpy as np
from absl import flags

from diffjax import data, digit_score, generate, images, inception, processes, samplers, train
from experiments import cli

flags.DEFINE_string("workdir", None, "run directory written by experiments.train_ddpm", required=True)
flags.DEFINE_enum("sampler", None, sorted(samplers.SAMPLERS), "sampler (default: the run's process's)")
flags.DEFINE_integer("steps", 50, "sampler steps (DDPM and IHDM take all levels)", lower_bound=1)
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

EVAL_FILE = "eval.json"


def evaluate(workdir, sampler=None, steps: int = 50, eta: float = 0.0, num: int = 1000, seed: int = 0,
             batch_size: int = 250, cache_dir=digit_score.DEFAULT_CACHE, progress: bool = True,
             guidance: float = 0.0, inception_weights=None) -> tuple[str, dict]:
    """Samples and scores a run (see the module docstring). Returns (key, result) and updates RUN/eval.json."""
    cfg = train.load_config(workdir)
    rgb = cfg.data.channels == 3
    if not rgb and (cfg.data.channels != 1 or cfg.data.image_size != 28):
        raise ValueError(f"{workdir} is a {cfg.data.dataset} run: the sample score is the digit classifier's "
                         f"Fréchet distance for 28x28 digits or FID for RGB images")
    if rgb and inception_weights is None:
        raise ValueError(f"{workdir} is an RGB ({cfg.data.dataset}) run, scored by FID: pass --inception=FILE, the "
                         f"Inception-v3 weights ({inception.HOW_TO_GET})")
    weights = inception.load(inception_weights) if rgb else None   # checked before any sampling
    sampler = processes.sampler_for(cfg, sampler)
    labels = None
    if cfg.model.num_classes:  # every class in turn: the score is of a balanced set
        labels = np.arange(num) % cfg.model.num_classes
    generate.class_labels(cfg.model.num_classes, None, guidance, num)  # guidance needs a conditional run
    cfg, graphdef, params, step = train.restore_ema(workdir)
    p = processes.make(cfg)
    prior = processes.load_prior(cfg, workdir) if sampler == "ihdm" else None
    train_ds, test_ds = data.load(cfg.data.dataset, "train"), data.load(cfg.data.dataset, "test")
    clf = None if rgb else digit_score.load_or_train(cache_dir, train_ds, test_ds)
    shape = (cfg.data.image_size, cfg.data.image_size, cfg.data.channels)
    tic = time.perf_counter()
    x = generate.sample(graphdef, params, p, jax.random.PRNGKey(seed), num, shape, sampler=sampler,
                        steps=steps, eta=processes.sampling_eta(cfg, eta), batch_size=batch_size,
                        prediction=processes.prediction(cfg), progress=progress, prior=prior, labels=labels,
                        guidance=guidance)
    seconds = time.perf_counter() - tic
    calls = samplers.nfe(sampler, steps, p.num_timesteps)
    nfe = calls * (2 if labels is not None and guidance > 0 else 1)  # guided: the conditional and the null call
    key = (f"{sampler}_{calls if sampler in ('ddpm', 'ihdm') else steps}"
           + (f"_w{guidance:g}" if labels is not None else "") + f"_n{num}_seed{seed}")
    generated = data.to_uint8(x)
    result = {"sampler": sampler, "steps": steps, "nfe": nfe, "eta": eta if sampler == "ddim" else None,
              "guidance": guidance if labels is not None else None, "num": num, "seed": seed,
              "checkpoint_step": step, "seconds": round(seconds, 2), "images_per_s": round(num / seconds, 2)}
    if rgb:
        result.update(fid=inception.fid(weights, generated, test_ds.images),
                      fid_train_vs_test=inception.fid(weights, train_ds.images[:num], test_ds.images))
    else:
        result.update(**digit_score.score(clf, generated, test_ds.images),
                      **digit_score.floors(clf, train_ds, test_ds, num))
    if labels is not None:
        result["class_accuracy"] = float(np.mean(digit_score.predict(clf, generated) == labels))
    path = Path(workdir) / EVAL_FILE
    results = json.loads(path.read_text()) if path.exists() else {}
    results[key] = result
    images.write_text(path, json.dumps(results, indent=1))
    images.save_grid(Path(workdir) / "eval" / f"{key}.png", x[:100], ncols=10)
    return key, result


def main(argv):
    del argv
    f = flags.FLAGS
    key, r = evaluate(f.workdir, f.sampler, f.steps, f.eta, f.num, f.seed, f.batch_size, f.cache_dir,
                      guidance=f.guidance, inception_weights=f.inception)
    if "fid" in r:
        print(f"{key}: FID {r['fid']:.2f} (floor: {r['num']} real train images {r['fid_train_vs_test']:.2f}); "
              f"{r['nfe']} network calls per image, {r['images_per_s']} images/s -> {Path(f.workdir) / EVAL_FILE}")
        return
    print(f"{key}: FD {r['fd']:.2f} (floors: real train digits {r['fd_train_vs_test']:.2f}, test digits blurred "
          f"1 px {r['fd_blurred_1px_vs_test']:.1f}), class entropy {r['class_entropy']:.3f} nats (test digits "
          f"{r['test_class_entropy']:.3f}, max 2.303); classifier test accuracy {r['classifier_test_accuracy']:.3f}; "
          + (f"samples of the asked class {r['class_accuracy']:.3f}; " if "class_accuracy" in r else "")
          + f"{r['nfe']} network calls per image, {r['images_per_s']} images/s "
          f"-> {Path(f.workdir) / EVAL_FILE}")


if __name__ == "__main__":
    cli.run(main)
