"""The README's pictures: python docs/figures.py RUN RESTORED, after

    python -m experiments.train_ddpm
    python -m experiments.restore --run checkpoints/mnist --degradation inpaint_random --level 0.5 --num 8 \
        --methods ddnm --out RESTORED

docs/images/heat_forward.png: test digits under the heat semigroup exp(t Laplace) (Neumann boundary) at
increasing t, one row per digit; samples.png and restoration.png: copies of the run's final sample grid and of
RESTORED/grid.png.
"""

import shutil
import sys
from pathlib import Path

import numpy as np

from diffjax import data, heat, images

OUT = Path(__file__).parent / "images"


def heat_forward(path, times=(0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)):
    x = data.mnist_sample("test").images[::125][:8].astype(np.float32) / 127.5 - 1   # one digit of each of 8 classes
    frames = np.stack([np.asarray(heat.heat(x, t)) for t in times], axis=1)          # [digits, times, H, W, C]
    images.save_grid(path, frames.reshape(-1, *x.shape[1:]), ncols=len(times), scale=3)


if __name__ == "__main__":
    run, restored = Path(sys.argv[1]), Path(sys.argv[2])
    OUT.mkdir(parents=True, exist_ok=True)
    heat_forward(OUT / "heat_forward.png")
    shutil.copy(sorted((run / "samples").glob("step_*.png"))[-1], OUT / "samples.png")
    shutil.copy(restored / "grid.png", OUT / "restoration.png")
    print(f"-> {OUT}")
