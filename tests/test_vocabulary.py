"""One CLI vocabulary across the entry points: `--run` reads a trained run, `--out` names what is written,
`--num` counts images, `--steps` counts sampler steps, list flags are plural, `--posterior_samples` counts
draws per image; and the package's console scripts name the same entry points."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if "__main__" in p.read_text())
# Names an earlier vocabulary used, each for several meanings, and what replaced them.
RETIRED = {"workdir": "run or out", "num_images": "num", "samples": "posterior_samples", "method": "methods",
           "diffusion": "run", "heat": "heat_run", "pde": "pde_run", "diffusion_steps": "steps",
           "sample_steps": "steps", "degradation_list": "degradations"}

LIST_FLAGS = r"""
import importlib, json, sys
from absl import flags
module = importlib.import_module("experiments." + sys.argv[1])
own = flags.FLAGS.flags_by_module_dict().get(module.__name__, [])
print(json.dumps({f.name: {"type": type(f).__name__, "help": f.help, "list": isinstance(f.parser, flags.ListParser)
                           or type(f.parser).__name__ == "ListParser"} for f in own}))
"""


@pytest.fixture(scope="module")
def entry_flags():
    def flags_of(name):
        p = subprocess.run([sys.executable, "-c", LIST_FLAGS, name], cwd=ROOT, capture_output=True, text=True,
                           check=True)
        return json.loads(p.stdout.strip().splitlines()[-1])
    return {name: flags_of(name) for name in ENTRY_POINTS}


def test_every_entry_point_speaks_the_shared_vocabulary(entry_flags):
    assert {"train_ddpm", "sample", "evaluate", "restore", "compare_filters", "train_pde", "bench"} <= set(entry_flags)
    for name, own in entry_flags.items():
        for flag, info in own.items():
            assert flag not in RETIRED, f"{name} --{flag}: use --{RETIRED[flag]}"
            if info["list"]:
                assert flag.endswith("s"), f"{name} --{flag} takes a list: its name is plural"
            if flag == "steps":
                assert "sampler steps" in info["help"] or "reverse steps" in info["help"], \
                    f"{name} --steps must count sampler steps: {info['help']}"
            if flag == "num":
                assert "image" in info["help"] or "samples" in info["help"] or "digits" in info["help"]
            if flag == "run" or flag.endswith("_run"):
                assert "run" in info["help"] and "directory" in info["help"] or "runs" in info["help"]
        assert "out" in own or name == "evaluate", f"{name} writes: its output flag is --out"
    for name in ("sample", "evaluate", "restore"):
        assert "run" in entry_flags[name], f"{name} reads a trained run: --run"
    assert "posterior_samples" in entry_flags["restore"] and "posterior_samples" in entry_flags["compare_filters"]


def test_console_scripts_name_the_entry_points():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for script, target in scripts.items():
        module, func = target.split(":")
        assert script.startswith("diffjax-") and module.startswith("experiments.")
        assert f"def {func}()" in (ROOT / (module.replace(".", "/") + ".py")).read_text()
    assert {t.split(":")[0].split(".")[1] for t in scripts.values()} == set(ENTRY_POINTS)
