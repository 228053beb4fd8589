"""Stopping a training run cleanly: SIGTERM and SIGINT become a request that the loop answers at its next step.

Clusters (SLURM), Kubernetes and preemptible cloud VMs stop a job with SIGTERM, then SIGKILL after a grace
period. Inside `StopRequest` the first SIGTERM or SIGINT only records the signal; the training loop asks
`due(step)` after every step, saves a verified checkpoint of that step and raises `Interrupted`. A second
signal while no checkpoint is being written stops at once, as without the handler. With several processes
(`jax.distributed`), JAX's coordination service catches SIGTERM on any host and picks one step at which every
host saves (`reached_preemption_sync_point`); there the handlers are left to JAX.
"""

import signal
import threading

import jax
import orbax.checkpoint as ocp


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving; `signum` gives the exit status 128 + signum."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class StopRequest:
    """A context manager around the training loop; see the module docstring."""

    def __enter__(self):
        self.signum, self.saving, self._previous = None, False, {}
        self.multihost = jax.process_count() > 1
        if not self.multihost and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and not self.saving:
            raise KeyboardInterrupt
        self.signum = self.signum or signum

    def due(self, step: int) -> bool:
        """Whether to save at `step` and stop."""
        if self.multihost and ocp.multihost.reached_preemption(step):
            self.signum = signal.SIGTERM
        return self.signum is not None

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False
