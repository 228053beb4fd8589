"""Image grids, PNG and npz files. Files on disk are uint8 NHWC (npz key `images`)."""

import math
from pathlib import Path

import einops
import numpy as np
from PIL import Image

from diffjax import files
from diffjax.data import to_uint8


def grid(images_uint8: np.ndarray, ncols: int | None = None, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tiles [N, H, W, C] uint8 images into one [rows*(H+pad)+pad, cols*(W+pad)+pad, C] image."""
    n = len(images_uint8)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    tiles = np.pad(images_uint8, ((0, nrows * ncols - n), (pad, 0), (pad, 0), (0, 0)), constant_values=pad_value)
    out = einops.rearrange(tiles, "(r c) h w ch -> (r h) (c w) ch", c=ncols)
    return np.pad(out, ((0, pad), (0, pad), (0, 0)), constant_values=pad_value)


def save_png(path, image_uint8: np.ndarray, scale: int = 1) -> None:
    """Saves one [H, W, C] uint8 image (C = 1 or 3), optionally enlarged by nearest neighbour."""
    img = np.repeat(np.repeat(image_uint8, scale, 0), scale, 1)
    pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    files.atomic(path, lambda f: pil.save(f, format="PNG"))


def save_grid(path, images, ncols: int | None = None, scale: int = 2) -> None:
    """Saves float [-1, 1] (or uint8) NHWC images as one PNG grid."""
    images = images if np.asarray(images).dtype == np.uint8 else to_uint8(images)
    save_png(path, grid(np.asarray(images), ncols), scale)


def save_npz(path, images_uint8: np.ndarray, **extra) -> None:
    """Saves uint8 NHWC images under key `images` (and any extra arrays)."""
    save_arrays(path, images=images_uint8, **extra)


def save_arrays(path, **arrays) -> None:
    """Saves named arrays as one compressed npz, atomically."""
    files.atomic(path, lambda f: np.savez_compressed(f, **arrays))


def save_labelled_rows(path, rows, ncols: int = 8) -> None:
    """Saves a figure of labelled rows: rows is a list of (label, float [-1, 1] NHWC images)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strips = [grid(to_uint8(x[:ncols]), ncols) for _, x in rows]
    h, w, _ = strips[0].shape
    margin = 1.8  # inches for the labels
    width = w / 40 + margin
    fig, axes = plt.subplots(len(rows), 1, figsize=(width, len(rows) * h / 40), squeeze=False)
    fig.subplots_adjust(left=margin / width, right=0.99, top=0.99, bottom=0.01, hspace=0.08)
    for ax, (label, _), strip in zip(axes[:, 0], rows, strips):
        ax.imshow(strip[..., 0] if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    files.atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def save_loss_curve(path, records: list[dict]) -> None:
    """The training loss (and its running mean over 10 logs) against the step, from metrics.jsonl records."""
    from matplotlib.figure import Figure

    steps = np.array([r["step"] for r in records])
    loss = np.array([r["loss"] for r in records])
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.plot(steps, loss, lw=0.8, alpha=0.5, label="loss")
    k = min(10, len(loss))
    ax.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, "valid"), lw=1.5, label=f"mean of {k} logs")
    ax.set(xlabel="step", ylabel="loss", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    files.atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))


def load_folder(folder) -> np.ndarray:
    """All PNGs of a folder as float32 [N, H, W, C] in [0, 1] (C = 1 if every image is grayscale)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")) \
        if Path(folder).is_dir() else []
    others = [p.name for p in paths if p.suffix.lower() != ".png"]
    if others:
        raise ValueError(f"{folder} holds files that are not PNG ({', '.join(others[:3])}): convert them to .png "
                         f"or move them out")
    if not paths:
        raise ValueError(f"no PNG images in {folder}: give a folder with grayscale or RGB .png files")
    imgs = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()
                imgs.append(im)
        except (OSError, SyntaxError, ValueError) as e:   # PIL's UnidentifiedImageError is an OSError
            raise files.DamagedFileError(f"{p} is not a readable PNG ({type(e).__name__}): replace it or move it "
                                         f"out of {folder}") from None
    mode = "L" if all(im.mode in ("L", "1", "I;16") for im in imgs) else "RGB"
    arrays = [np.asarray(im.convert(mode), np.float32) / 255.0 for im in imgs]
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"images in {folder} have different sizes {sorted(sizes)}; resize them to one size")
    x = np.stack(arrays)
    return x[..., None] if x.ndim == 3 else x


def display_size(y, shape) -> np.ndarray:
    """Degraded images at the clean size (nearest-neighbour upsampling for super-resolution), in [0, 1]."""
    y = np.asarray(y)
    f = shape[1] // y.shape[1]
    return np.clip(np.repeat(np.repeat(y, f, 1), f, 2), 0, 1)
