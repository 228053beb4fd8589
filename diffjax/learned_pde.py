"""Learned anisotropic diffusion: Perona-Malik-type filters whose diffusivity a network chooses from the image.

Every model runs the same explicit scheme for K steps from u_0 (the degraded image y; for inpainting its harmonic
fill, with the observed pixels held at y):

    u_{k+1} = P(u_k + dt div(c(u_k) grad u_k)),    P = projection onto [min u_0, max u_0] (per image),

`classical.flux_divergence` on the 4-neighbour grid. A pixel map c is put on the edges as the mean of the two
pixels (Weickert 1998, "Anisotropic diffusion in image processing", Sec. 3.4). The models differ in c:

- "lambda": Perona-Malik, c = g(|d|^2, lambda) on each edge (exponential or rational g), with lambda and the
  stopping time T = K dt predicted per image by a small CNN of y. dt <= 0.25 keeps it a convex combination of
  neighbours (maximum principle).
- "p1": c = P1(|grad f(u)| / max |grad f(u)|), P1 continuous and affine on each of n equal cells of [0, 1]
  (its n + 1 node values are learned, in [-NEGATIVE, 1]: negative values diffuse backwards, i.e. sharpen), f(u)
  = u + a two-layer convolution of u (learned). Backward diffusion breaks the maximum principle; P restores it
  (the scheme is stable in the max norm by construction: every iterate stays in the range of u_0). For
  nonnegative c and dt <= 0.25 (always), P does nothing: the explicit step is a convex combination already.
- "lambda_border", "p1_border": p = a frozen border classifier's probability that a pixel lies on an edge of
  the clean image (`BorderNet`, trained on |grad x|_inf > BORDER_THRESHOLD); lambda = p lambda_b + (1 - p)
  lambda_i per pixel, or c = p P1_b + (1 - p) P1_i.

Training: Adam on the mean squared error of the restored training digits, by backpropagation through the
unrolled scheme, one model per degradation and level (`experiments.train_pde`).
"""

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from diffjax import checkpoint, classical, data, degrade, files, metrics
from diffjax.train import NonFiniteLossError

KINDS = classical.NOISE + ("blur",) + classical.INPAINT
MODELS = ("lambda", "lambda_border", "p1", "p1_border")
NEGATIVE = 0.5           # the P1 node values lie in [-NEGATIVE, 1]
MAX_DT = 0.25            # explicit scheme, 4 neighbours
LAMBDA_RANGE = (0.005, 5.0)  # lambda = lo (hi / lo)^sigmoid(z): bounded, so g and its gradients stay finite
BORDER_THRESHOLD = 0.25  # a clean pixel is a border pixel when its largest forward difference exceeds this
FEATURES = 8             # hidden channels of the P1 model's convolution f(u) = u + conv(tanh(conv(u)))


@dataclass(frozen=True)
class Config:
    """One learned restorer and its training. `cells`: the P1 partition size n."""

    model: str = "lambda"
    kind: str = "gaussian"
    level: float = 0.2
    cells: int = 8
    diffusivity: str = "rational"
    pde_steps: int = 30
    train_steps: int = 200
    batch_size: int = 32
    lr: float = 1e-2
    seed: int = 0
    dataset: str = "mnist_sample"
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown learned model {self.model!r}; choose from {MODELS}")
        if self.kind not in KINDS:
            raise ValueError(f"learned diffusion does not restore {self.kind!r}; choose from {KINDS}")
        if self.diffusivity not in classical.DIFFUSIVITIES:
            raise ValueError(f"unknown diffusivity {self.diffusivity!r}; choose from {sorted(classical.DIFFUSIVITIES)}")
        if self.cells < 1 or self.pde_steps < 1 or self.train_steps < 1 or self.batch_size < 1:
            raise ValueError(f"cells, pde_steps, train_steps and batch_size must be >= 1, got {self}")


# --- networks ---------------------------------------------------------------------------------------------

class Encoder(nnx.Module):
    """Conv(16) - Conv(32, /2) - Conv(32, /2) - spatial mean - Linear: a few numbers per image."""

    def __init__(self, outputs: int, rngs: nnx.Rngs, channels: int = 1):
        self.convs = nnx.List([nnx.Conv(channels, 16, (3, 3), rngs=rngs),
                               nnx.Conv(16, 32, (3, 3), strides=2, rngs=rngs),
                               nnx.Conv(32, 32, (3, 3), strides=2, rngs=rngs)])
        self.out = nnx.Linear(32, outputs, rngs=rngs, kernel_init=nnx.initializers.zeros)

    def __call__(self, y):
        h = 2 * y - 1
        for conv in self.convs:
            h = nnx.relu(conv(h))
        return self.out(h.mean(axis=(1, 2)))


class BorderNet(nnx.Module):
    """A small UNet (two levels, 16-32-64 channels, 117k parameters) with a sigmoid output: the probability that a
    pixel of the clean image lies on a border, from the degraded image."""

    def __init__(self, rngs: nnx.Rngs, channels: int = 1):
        conv = lambda a, b: nnx.Conv(a, b, (3, 3), rngs=rngs)  # noqa: E731
        self.down = nnx.List([nnx.List([conv(channels, 16), conv(16, 16)]), nnx.List([conv(16, 32), conv(32, 32)]),
                              nnx.List([conv(32, 64), conv(64, 64)])])
        self.up = nnx.List([nnx.List([conv(64 + 32, 32), conv(32, 32)]), nnx.List([conv(32 + 16, 16), conv(16, 16)])])
        self.out = nnx.Conv(16, 1, (1, 1), rngs=rngs)

    def logits(self, y):
        h, skips = 2 * y - 1, []
        for i, (c1, c2) in enumerate(self.down):
            if i:
                skips.append(h)
                h = nnx.max_pool(h, (2, 2), (2, 2), padding="SAME")
            h = nnx.relu(c2(nnx.relu(c1(h))))
        for c1, c2 in self.up:
            skip = skips.pop()
            h = jax.image.resize(h, h.shape[:1] + skip.shape[1:3] + h.shape[3:], "nearest")
            h = nnx.relu(c2(nnx.relu(c1(jnp.concatenate([h, skip], -1)))))
        return self.out(h)

    def __call__(self, y):
        return nnx.sigmoid(self.logits(y))


def border_labels(x):
    """1 where the largest absolute forward difference of the clean image at a pixel exceeds BORDER_THRESHOLD."""
    g = jnp.abs(classical.gradient(x)).max(axis=-1)
    return (g > BORDER_THRESHOLD).astype(x.dtype)


def p1(s, values):
    """The piecewise-affine function with node values `values` [n + 1] at s = 0, 1/n, ..., 1 (continuous, affine
    on each cell, constant beyond 1): sum_i v_i max(0, 1 - |n s - i|), the hat basis (dense, so its gradient
    is a reduction, not a scatter). s: any shape."""
    n = values.shape[-1] - 1
    hats = jnp.maximum(0.0, 1.0 - jnp.abs(jnp.clip(s, 0.0, 1.0)[..., None] * n - jnp.arange(n + 1)))
    return hats @ values


def _edge_mean(c, axis):
    """A pixel map [B, H, W, C] on the edges along `axis`: the mean of the two pixels."""
    n = c.shape[axis]
    return 0.5 * (jax.lax.slice_in_dim(c, 0, n - 1, axis=axis) + jax.lax.slice_in_dim(c, 1, n, axis=axis))


def _patches3x3(u):
    """The 3x3 neighbourhood of every pixel (reflecting border) stacked on the channel axis: [B, H, W, 9 C], so a
    3x3 convolution is one matmul. (XLA:CPU runs a convolution's gradient slowly inside a loop; this is 10x faster
    in the unrolled scheme.)"""
    _, h, w, _ = u.shape
    p = jnp.pad(u, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    return jnp.concatenate([p[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=-1)


def _gradient_norm(u):
    return jnp.sqrt(jnp.sum(classical.gradient(u) ** 2, -1) + 1e-8)


def _time_logit(fraction):
    return math.log(fraction / (1 - fraction))


class LambdaDiffusion(nnx.Module):
    """Perona-Malik with lambda (one, or one on borders and one elsewhere) and the stopping time from a CNN of y."""

    def __init__(self, cfg: Config, rngs: nnx.Rngs, channels: int = 1):
        self.border = cfg.model == "lambda_border"
        self.g = classical.DIFFUSIVITIES[cfg.diffusivity]
        self.encoder = Encoder(3 if self.border else 2, rngs, channels)
        self.bias = nnx.Param(jnp.zeros(3 if self.border else 2))
        self.set_start(0.1, 0.3)

    def set_start(self, scale: float, time_fraction: float) -> None:
        """lambda = scale everywhere and dt = time_fraction MAX_DT, for every image (the encoder's output is 0)."""
        lo, hi = LAMBDA_RANGE
        lam = _time_logit(math.log(scale / lo) / math.log(hi / lo))
        self.bias[...] = jnp.asarray([lam, _time_logit(time_fraction)] + ([lam] if self.border else []))

    def context(self, y, border):
        z = self.encoder(y) + self.bias[...]
        lo, hi = LAMBDA_RANGE
        lam = lambda j: lo * (hi / lo) ** nnx.sigmoid(z[:, j])[:, None, None, None]  # noqa: E731
        lam = border * lam(0) + (1 - border) * lam(2) if self.border else lam(0)
        return {"lambda": lam, "dt": MAX_DT * nnx.sigmoid(z[:, 1])[:, None, None, None]}

    def edge_coefficient(self, u, ctx):
        lam = ctx["lambda"]
        return lambda d, axis: self.g(d * d, _edge_mean(lam, axis) if self.border else lam)

    def pixel_coefficient(self, u, ctx):
        return self.g(_gradient_norm(u) ** 2, ctx["lambda"])


class P1Diffusion(nnx.Module):
    """c = P1(|grad f(u)| / max |grad f(u)|) (two P1 functions blended by the border probability for p1_border)."""

    def __init__(self, cfg: Config, rngs: nnx.Rngs, channels: int = 1):
        self.border = cfg.model == "p1_border"
        self.conv1 = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (9 * channels, FEATURES)))
        self.conv2 = nnx.Param(jnp.zeros((9 * FEATURES, channels)))
        self.nodes = nnx.Param(jnp.zeros((2 if self.border else 1, cfg.cells + 1)))
        self.time = nnx.Param(jnp.zeros(()))
        self.set_start(0.2, 0.5)

    def set_start(self, scale: float, time_fraction: float) -> None:
        """Every P1 function at the exponential diffusivity exp(-s^2 / scale^2) at its nodes (s = |grad f| / max),
        dt = time_fraction MAX_DT."""
        s = np.linspace(0, 1, self.nodes.shape[-1])
        start = np.clip((np.exp(-(s / scale) ** 2) + NEGATIVE) / (1 + NEGATIVE), 0.02, 0.98)
        self.nodes[...] = jnp.broadcast_to(jnp.asarray(np.log(start / (1 - start)), jnp.float32), self.nodes.shape)
        self.time[...] = jnp.asarray(_time_logit(time_fraction), jnp.float32)

    def values(self):
        """The node values of the P1 function(s), [1 or 2, n + 1], in [-NEGATIVE, 1]."""
        return (1 + NEGATIVE) * nnx.sigmoid(self.nodes[...]) - NEGATIVE

    def context(self, y, border):
        return {"border": border, "dt": MAX_DT * nnx.sigmoid(self.time[...])}

    def pixel_coefficient(self, u, ctx):
        f = u + _patches3x3(jnp.tanh(_patches3x3(u) @ self.conv1[...])) @ self.conv2[...]
        s = _gradient_norm(f)
        s = s / (jnp.max(s, axis=(1, 2, 3), keepdims=True) + 1e-6)
        v = self.values()
        c = p1(s, v[0])
        return ctx["border"] * c + (1 - ctx["border"]) * p1(s, v[1]) if self.border else c

    def edge_coefficient(self, u, ctx):
        c = self.pixel_coefficient(u, ctx)
        return lambda d, axis: _edge_mean(c, axis)


def make_model(cfg: Config, key, channels: int = 1):
    rngs = nnx.Rngs(key)
    return (LambdaDiffusion if cfg.model.startswith("lambda") else P1Diffusion)(cfg, rngs, channels)


def diffuse(model, u0, y, hold, border, steps: int):
    """The scheme of the module docstring, K = steps. u0, y, hold, border: [B, H, W, C]; hold = 1 keeps y."""
    ctx = model.context(y, border)
    lo, hi = jnp.min(u0, axis=(1, 2, 3), keepdims=True), jnp.max(u0, axis=(1, 2, 3), keepdims=True)

    def body(_, u):
        u_next = jnp.clip(u + ctx["dt"] * classical.flux_divergence(u, model.edge_coefficient(u, ctx)), lo, hi)
        return jnp.where(hold > 0, y, u_next)

    return jnp.clip(jax.lax.fori_loop(0, steps, jax.checkpoint(body), u0), 0.0, 1.0)


def start(obs: degrade.Observation):
    """(u_0, hold) of an observation: y and nothing held, or for inpainting the harmonic fill and the mask."""
    if obs.kind in classical.INPAINT:
        return classical.harmonic_inpaint(obs.y, obs.mask), obs.mask
    return obs.y, jnp.zeros_like(obs.y)


# --- restorers as stored runs --------------------------------------------------------------------------------

@dataclass
class Restorer:
    """A trained model ready to apply: `restore(obs)` and the coefficient map `coefficients(obs)`."""

    cfg: Config
    graphdef: nnx.GraphDef
    params: nnx.State
    border: "Restorer | None" = None

    def border_probability(self, y):
        return _border_probability(self.border, y)

    def restore(self, obs: degrade.Observation):
        u0, hold = start(obs)
        return _restore_fn(self.graphdef, self.cfg.pde_steps)(self.params, u0, obs.y, hold,
                                                              self.border_probability(obs.y))

    def coefficients(self, obs: degrade.Observation):
        """The diffusivity map c(u_0) [B, H, W, C] of the first step."""
        u0, _ = start(obs)
        model = nnx.merge(self.graphdef, self.params)
        return model.pixel_coefficient(u0, model.context(obs.y, self.border_probability(obs.y)))


_JITTED = {}


def _cached_jit(name, graphdef, *static, make):
    if (name, graphdef, static) not in _JITTED:
        _JITTED[name, graphdef, static] = jax.jit(make())
    return _JITTED[name, graphdef, static]


def _border_probability(border: "Restorer | None", y):
    """The border classifier's probability map of y, or zeros without a classifier."""
    return jnp.zeros_like(y) if border is None else _border_fn(border.graphdef)(border.params, y)


def _restore_fn(graphdef, steps):
    return _cached_jit("restore", graphdef, steps, make=lambda: lambda p, u0, y, hold, border: diffuse(
        nnx.merge(graphdef, p), u0, y, hold, border, steps))


def _border_fn(graphdef):
    return _cached_jit("border", graphdef, make=lambda: lambda p, y: nnx.merge(graphdef, p)(y))


# --- training ------------------------------------------------------------------------------------------------

def _split(dataset: str):
    """(train, validation) uint8 images from the train split: every tenth digit is held out for validation."""
    x = data.load(dataset, "train").images
    held = np.arange(len(x)) % 10 == 9
    return x[~held], x[held]


def _unit(images_u8):
    return jnp.asarray(images_u8, jnp.float32) / 255.0


def _batch(train_x, kind, level, key, batch_size):
    """Clean float images and their observation for one step (degraded outside the jitted step: one compiled
    step serves every degradation)."""
    k_idx, k_deg = jax.random.split(key)
    x = _unit(train_x[np.asarray(jax.random.randint(k_idx, (batch_size,), 0, len(train_x)))])
    return x, degrade.degrade(kind, level, k_deg, x)


def run_dir(root, cfg: Config) -> Path:
    name = cfg.model + (f"_n{cfg.cells}" if cfg.model.startswith("p1") else "")
    return Path(root) / name / f"{cfg.kind}_{cfg.level:g}"


def _write_config(workdir: Path, cfg: Config) -> None:
    path = workdir / "config.json"
    if path.exists():
        old = files.read_json(path, CONFIG_FIX)
        if old != json.loads(json.dumps(asdict(cfg))):
            raise ValueError(f"{workdir} holds a run with another config ({old}); pass another directory or delete it")
    else:
        files.write_text(path, json.dumps(asdict(cfg), indent=1))


def _fit(workdir: Path, cfg: Config, model, loss_fn, batches, val_fn, progress: bool, desc: str,
         checkpoint_every: int = 100, val_key: str = "val_psnr"):
    """Adam (cosine decay) on loss_fn(model, batch), one jitted step per call, resumable from the newest intact
    checkpoint of workdir (same seed, same numbers). Logs val_fn's value (under val_key) at the start and at every
    checkpoint to metrics.jsonl. Returns (graphdef, params)."""
    with files.exclusive(workdir):   # one writer per run directory
        _write_config(workdir, cfg)
        graphdef, params = nnx.split(model)
        tx = optax.adam(optax.cosine_decay_schedule(cfg.lr, cfg.train_steps))
        state = {"params": params, "opt": tx.init(params), "step": jnp.asarray(0, jnp.int32)}
        mngr = checkpoint.manager(workdir)
        if checkpoint.steps(mngr):
            state = checkpoint.restore(mngr, state)
            checkpoint.set_aside_after(mngr, int(state["step"]))

        @jax.jit
        def step(state, batch):
            loss, grads = jax.value_and_grad(lambda p: loss_fn(nnx.merge(graphdef, p), batch))(state["params"])
            updates, opt = tx.update(grads, state["opt"], state["params"])
            return ({"params": optax.apply_updates(state["params"], updates), "opt": opt, "step": state["step"] + 1},
                    loss)

        log = workdir / "metrics.jsonl"
        done = int(state["step"])
        lines = [json.dumps(r) for r in files.read_jsonl(log, "delete it to resume without the log so far")
                 if r["step"] <= done] if log.exists() else []
        if done == 0:   # the start (for the learned filters: the classical filter tuned on one batch)
            lines = [json.dumps({"step": 0, val_key: val_fn(nnx.merge(graphdef, state["params"]))})]
        bar = tqdm(range(done, cfg.train_steps), desc=desc, disable=not progress, initial=done, total=cfg.train_steps)
        for i in bar:
            state, loss = step(state, batches(i))
            if not np.isfinite(float(loss)):
                raise NonFiniteLossError(f"{desc}: non-finite loss at step {i + 1}; lower the learning rate (--lr)")
            if (i + 1) % checkpoint_every == 0 or i + 1 == cfg.train_steps:
                lines.append(json.dumps({"step": i + 1, "loss": float(loss),
                                         val_key: val_fn(nnx.merge(graphdef, state["params"]))}))
                files.write_text(log, "\n".join(lines) + "\n")
                checkpoint.save(mngr, i + 1, state)
                bar.set_postfix({val_key: json.loads(lines[-1])[val_key]})
        return graphdef, state["params"]


def _validation(kind, level, val_x, key, num: int = 200):
    """The first `num` validation digits and their observation."""
    x = _unit(val_x[:num])
    return x, degrade.degrade(kind, level, key, x)


def train_border(root, dataset: str = "mnist_sample", steps: int = 1500, seed: int = 0, progress: bool = True,
                 lr: float = 3e-3, batch_size: int = 32) -> Restorer:
    """Trains (or resumes, or loads) the border classifier of `root/border` by binary cross-entropy on every
    degradation of KINDS at its default levels, one task per step in turn."""
    cfg = Config(model="border", kind="all", level=0.0, train_steps=steps, lr=lr, seed=seed, dataset=dataset,
                 batch_size=batch_size)
    workdir = Path(root) / "border"
    train_x, val_x = _split(dataset)
    tasks = [(k, lv) for k in KINDS for lv in degrade.DEFAULT_LEVELS[k]]
    key = jax.random.PRNGKey(seed)
    model = BorderNet(nnx.Rngs(jax.random.fold_in(key, 1)), train_x.shape[-1])

    def batches(i):
        kind, level = tasks[i % len(tasks)]
        x, obs = _batch(train_x, kind, level, jax.random.fold_in(key, i + 2), batch_size)
        return start(obs)[0], border_labels(x)

    def loss_fn(net, batch):
        u0, labels = batch
        return optax.sigmoid_binary_cross_entropy(net.logits(u0), labels).mean()

    val = [(start(obs)[0], border_labels(x)) for x, obs in
           (_validation(k, lv, val_x, jax.random.fold_in(key, 0), 50) for k, lv in tasks)]

    def accuracy(net):
        prob = functools.partial(_border_fn(nnx.graphdef(net)), nnx.state(net))
        return float(np.mean([np.mean((np.asarray(prob(u0)) > 0.5) == np.asarray(lab)) for u0, lab in val]))

    graphdef, params = _fit(workdir, cfg, model, loss_fn, batches, accuracy, progress, "border classifier",
                            checkpoint_every=250, val_key="val_accuracy")
    return Restorer(cfg, graphdef, params)


def train(root, cfg: Config, progress: bool = True, border_steps: int = 1500, checkpoint_every: int = 100) -> Restorer:
    """Trains (or resumes) one learned restorer in run_dir(root, cfg); the border models first train (or load) the
    shared border classifier of root/border. Checkpoints (and validation) every `checkpoint_every` steps and at the
    end. Returns the restorer."""
    cfg.check()
    workdir = run_dir(root, cfg)
    border = train_border(root, cfg.dataset, border_steps, progress=progress) if cfg.model.endswith("_border") \
        else None
    train_x, val_x = _split(cfg.dataset)
    key = jax.random.PRNGKey(cfg.seed)
    model = make_model(cfg, jax.random.fold_in(key, 1), train_x.shape[-1])

    def batches(i):
        x, obs = _batch(train_x, cfg.kind, cfg.level, jax.random.fold_in(key, i + 3), cfg.batch_size)
        return (x, obs.y, *start(obs), _border_probability(border, obs.y))

    def loss_fn(m, batch):
        x, y, u0, hold, b = batch
        return jnp.mean((diffuse(m, u0, y, hold, b, cfg.pde_steps) - x) ** 2)

    _warm_start(model, loss_fn, batches(-1))
    x_val, obs_val = _validation(cfg.kind, cfg.level, val_x, jax.random.fold_in(key, 0))

    def val_psnr(m):
        graphdef, params = nnx.split(m)
        r = Restorer(cfg, graphdef, params, border)
        return float(np.mean(metrics.psnr(r.restore(obs_val), x_val)))

    graphdef, params = _fit(workdir, cfg, model, loss_fn, batches, val_psnr, progress, f"{run_dir('', cfg)}",
                            checkpoint_every)
    return Restorer(cfg, graphdef, params, border)


START_SCALES = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)
START_TIMES = (0.05, 0.15, 0.3, 0.6, 0.95)


def _warm_start(model, loss_fn, batch) -> None:
    """Starts the model at the best single (scale, stopping time) of a grid for one batch: the classical filter
    tuned for the whole data set, from which training learns what to change per image."""
    graphdef, params = nnx.split(model)
    loss = jax.jit(lambda p: loss_fn(nnx.merge(graphdef, p), batch))

    def trial(point):
        model.set_start(*point)
        return float(loss(nnx.state(model)))

    model.set_start(*min(((a, t) for a in START_SCALES for t in START_TIMES), key=trial))


CONFIG_FIX = "train that run again with python -m experiments.train_pde, or restore the file from a copy"


def _read_config(path) -> Config:
    """A run's Config from its config.json; a damaged file is one DamagedFileError naming it."""
    try:
        return Config(**files.read_json(path, CONFIG_FIX))
    except TypeError as e:
        raise files.DamagedFileError(f"{path} is damaged (not a learned-diffusion config: {e}): {CONFIG_FIX}") from None


def load(path) -> Restorer:
    """The trained restorer of a run directory (run_dir), its checkpoint verified; the border classifier of a
    border model is read from the sibling root/border."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise checkpoint.CheckpointError(f"{path} is not a learned-diffusion run (no config.json): train it with "
                                         f"python -m experiments.train_pde")
    cfg = _read_config(path / "config.json")
    border = None
    if cfg.model.endswith("_border"):
        bcfg = _read_config(path.parent.parent / "border" / "config.json")
        border = _load_params(path.parent.parent / "border", bcfg, lambda: BorderNet(nnx.Rngs(0)))
    return _load_params(path, cfg, lambda: make_model(cfg, jax.random.PRNGKey(0)), border)


def _load_params(path, cfg, make, border=None) -> Restorer:
    """Restores the verified newest checkpoint of a run into the structure of `make()`."""
    graphdef, params = nnx.split(nnx.eval_shape(make))
    tx = optax.adam(optax.cosine_decay_schedule(cfg.lr, cfg.train_steps))
    target = {"params": params, "opt": jax.eval_shape(tx.init, params), "step": jax.ShapeDtypeStruct((), jnp.int32)}
    state = checkpoint.restore(checkpoint.manager(path, create=False), target)
    return Restorer(cfg, graphdef, state["params"], border)
