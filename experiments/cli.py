"""What every entry point shares: config flags, logging, and one-line errors instead of tracebacks."""

import gc
import sys
from pathlib import Path

from absl import app, flags, logging

from diffjax import checkpoint, data, files, parallel, runtime, train

CONFIGS = Path(__file__).parent / "configs"
USER_ERRORS = (ValueError, checkpoint.CheckpointError, data.DataUnavailableError, train.NonFiniteLossError,
               files.LockedError)


def default_run_dir(cfg) -> Path:
    return Path("checkpoints") / cfg.name


def _parse_flags(argv):
    """absl's flag parsing, with a bad flag value reported as one `error:` line (exit status 2). A config file
    that raised is reported by its flag and its exception's last line (ml_collections embeds the traceback)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        lines = str(e).strip().splitlines()
        message = f"{lines[0]} {lines[-1]}" if len(lines) > 1 else lines[0]
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)


def run(main) -> None:
    """absl `app.run(main)` with the CPU tuning of `diffjax.runtime` (where tcmalloc is installed, the process
    first restarts itself with it preloaded), turning bad flags, the project's user errors and Ctrl-C or SIGTERM
    into one line on stderr and an exit status (2, 130, 143)."""
    runtime.restart_with_tcmalloc()
    runtime.configure()

    def wrapped(argv):
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
        parallel.initialize_distributed()
        try:
            main(argv)
        except USER_ERRORS as e:
            sys.stdout.flush()
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        except KeyboardInterrupt as e:   # preemption.Interrupted says which signal; a bare Ctrl-C is SIGINT's 130
            sys.stdout.flush()
            print(str(e) or "interrupted", file=sys.stderr, flush=True)
            sys.exit(128 + getattr(e, "signum", 2))

    # Everything is imported: the garbage collector's full collections no longer walk the objects of jax, flax
    # and Orbax.
    gc.freeze()
    app.run(wrapped, flags_parser=_parse_flags)
