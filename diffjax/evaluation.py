"""Sample quality of a trained run: sample `num` images and score them by a Fréchet distance with its floors.

Digits (28x28, one channel) are scored in the features of the project's digit classifier (`digit_score`),
RGB images (CIFAR-10) by FID in the features of Inception-v3 (`inception`, weights from a local file), with
the FID of as many real train images as the floor. The Fréchet distance of Gaussians fitted to features
(Heusel et al. 2017): ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).
"""

import json
import time
from pathlib import Path

import jax
import numpy as np

from diffjax import data, digit_score, files, generate, images, inception, processes, samplers, train

EVAL_FILE = "eval.json"


def evaluate(workdir, sampler=None, steps: int | None = None, eta: float = 0.0, num: int = 1000, seed: int = 0,
             batch_size: int = 250, cache_dir=digit_score.DEFAULT_CACHE, progress: bool = True,
             guidance: float = 0.0, inception_weights=None) -> tuple[str, dict]:
    """Samples and scores a run (see the module docstring). Returns (key, result) and updates RUN/eval.json."""
    cfg = train.load_config(workdir)
    path = Path(workdir) / EVAL_FILE
    with files.exclusive(Path(workdir) / "eval", remove_if_unused=True):   # one writer of eval.json at a time
        # read first: a damaged file stops the run before any sampling
        results = files.read_json(path, "move it aside and evaluate again (its scores are lost otherwise)") \
            if path.exists() else {}
        rgb = cfg.data.channels == 3
        if not rgb and (cfg.data.channels != 1 or cfg.data.image_size != 28):
            raise ValueError(f"{workdir} is a {cfg.data.dataset} run: the sample score is the digit classifier's "
                             f"Fréchet distance for 28x28 digits or FID for RGB images")
        if rgb and inception_weights is None:
            raise ValueError(f"{workdir} is an RGB ({cfg.data.dataset}) run, scored by FID: pass --inception=FILE, the "
                             f"Inception-v3 weights ({inception.HOW_TO_GET})")
        weights = inception.load(inception_weights) if rgb else None   # checked before any sampling
        sampler = processes.sampler_for(cfg, sampler)
        steps = steps or samplers.SAMPLERS[sampler].default_steps
        eta = processes.sampling_eta(cfg, eta)   # an IHDM run's own sampling noise delta
        labels = None
        if cfg.model.num_classes:  # every class in turn: the score is of a balanced set
            labels = np.arange(num) % cfg.model.num_classes
        generate.class_labels(cfg.model.num_classes, None, guidance, num)  # guidance needs a conditional run
        cfg, graphdef, params, step = train.restore_ema(workdir)
        p = processes.make(cfg)
        prior = processes.load_prior(cfg, workdir) if sampler == "ihdm" else None
        train_ds, test_ds = data.from_config(cfg, "train"), data.from_config(cfg, "test")
        clf = None if rgb else digit_score.load_or_train(cache_dir, train_ds, test_ds)
        shape = (cfg.data.image_size, cfg.data.image_size, cfg.data.channels)
        tic = time.perf_counter()
        x = generate.sample(graphdef, params, p, jax.random.PRNGKey(seed), num, shape, sampler=sampler,
                            steps=steps, eta=eta, batch_size=batch_size,
                            prediction=processes.prediction(cfg), progress=progress, prior=prior, labels=labels,
                            guidance=guidance)
        seconds = time.perf_counter() - tic
        calls = samplers.nfe(sampler, steps, p.num_timesteps)
        nfe = calls * (2 if labels is not None and guidance > 0 else 1)  # guided: the conditional and the null call
        made_by = samplers.settings(sampler, steps, eta, p.num_timesteps)
        key = files.output_name(sampler=sampler, **made_by, w=guidance if labels is not None else None, n=num,
                                seed=seed)
        generated = data.to_uint8(x)
        result = {"sampler": sampler, "steps": steps, "nfe": nfe, "eta": made_by["eta"],
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
        results[key] = result
        files.write_text(path, json.dumps(results, indent=1))
        images.save_grid(Path(workdir) / "eval" / f"{key}.png", x[:100], ncols=10)
        return key, result
