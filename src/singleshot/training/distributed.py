"""Data-parallel training on torch.distributed: the process group, how a global batch is split
among the processes, and the local launcher behind ``train --nproc N``.

The launcher starts N processes on this machine with the environment torchrun gives its
workers (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``), so a process started by it and one started by ``torchrun`` on any node are the
same worker: :func:`world_from_env` joins the group the environment describes.

Backends: ``nccl`` where every process has a GPU, ``gloo`` on CPUs. A collective waits at most
``timeout_s`` for the others: a process that died makes its peers fail with one line
(:class:`PeerLost`) instead of waiting for ever.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import SingleshotError

DEFAULT_TIMEOUT_S = 1800.0  # torch's own default; rank 0 evaluates while the others wait


class PeerLost(SingleshotError):
    """Another process of the group died or stopped answering: this one stops too."""


@dataclass(frozen=True)
class World:
    """This process's place in the group. ``size == 1``: no group (one process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs and evaluations."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the group, in place (unchanged with one process)."""
        if self.size > 1:
            with peer_errors(self):
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.size > 1:
            with peer_errors(self):
                dist.barrier()

    def close(self) -> None:
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = World()


def in_torchrun_env() -> bool:
    """True when this process was started as one of several workers (torchrun or our launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in os.environ


def world_from_env(timeout_s: float = DEFAULT_TIMEOUT_S) -> World:
    """Join the process group the torchrun environment describes (env:// rendezvous), or
    :data:`SINGLE` when there is none. nccl when this process sees a GPU, gloo otherwise."""
    if not in_torchrun_env():
        return SINGLE
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError, OSError) as err:
        raise PeerLost(f"rank {rank}: could not join the process group at "
                       f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} "
                       f"({_first_line(err)})") from None
    return World(rank, size, local_rank, local_size, backend)


class peer_errors:
    """A context in which a failed collective (a peer died, a timeout) becomes :class:`PeerLost`."""

    def __init__(self, world: World, what: str = "") -> None:
        self.world, self.what = world, what

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None or self.world.size == 1:
            return False
        dist_error = getattr(dist, "DistError", RuntimeError)
        if isinstance(err, dist_error) or (isinstance(err, RuntimeError) and _looks_like_peer(err)):
            raise PeerLost(f"rank {self.world.rank}: lost contact with the other process(es)"
                           f"{self.what} ({_first_line(err)})") from None
        return False


def _looks_like_peer(err: BaseException) -> bool:
    text = str(err).lower()
    return any(k in text for k in ("gloo", "nccl", "connection", "timed out", "timeout",
                                   "peer", "socket", "broken pipe"))


def _first_line(err: BaseException) -> str:
    """The gist of a torch.distributed error: its first line, less gloo's source location and
    its advice."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = re.sub(r"^\[[^\]]*\]\s*", "", lines[0] if lines else type(err).__name__)
    return text.split(" This is typically")[0].strip()[:300]


def split_batch(indices: list[int], rank: int, size: int) -> tuple[list[int], int]:
    """One global batch -> (this rank's sample indices, how many of them count).

    The split is strided (rank r takes every size-th sample from the r-th, as torch's
    DistributedSampler interleaves). A rank left without a sample (a last batch smaller than the
    group) gets the batch's first sample with weight 0, so every rank runs a step and the gradient
    is that of the global batch exactly.
    """
    mine = indices[rank::size]
    if mine:
        return mine, len(mine)
    return indices[:1], 0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the rendezvous of a one-machine group)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(local_rank: int, target, args, env: dict) -> None:
    """A launched process: the torchrun environment of its rank, then ``target(*args)``, whose
    return value is the exit code (``target`` flushes its output first). The process ends with
    ``os._exit``: its work is written and its group closed by then, and the interpreter's
    teardown of gloo's threads can abort a process that has finished ("terminate called without
    an active exception", seen once in a few dozen runs), which would read as a failed rank."""
    from ..errors import raise_on_sigterm

    raise_on_sigterm()  # the launcher passes SIGTERM on: each rank saves, as on Ctrl-C
    os.environ.update(env)
    os.environ["RANK"] = os.environ["LOCAL_RANK"] = str(local_rank)
    os._exit(target(*args))  # target flushed what it printed


def launch(nproc: int, target, args: tuple = (), grace_s: float = 60.0) -> tuple[int, str | None]:
    """Run ``target(*args)`` in ``nproc`` processes on this machine as one group; returns
    (exit code, a message for the user or None): 0 when every process returned 0, else the first
    failure's code; 130 on Ctrl-C.

    ``target`` must be importable (a module-level function): processes are spawned. It is
    responsible for its own one-line error and returns its exit code. When one process fails,
    the others get ``grace_s`` to notice (their collectives fail) and save their work before
    they are terminated. A process killed by a signal said nothing: the message says it.
    """
    import torch.multiprocessing as mp

    env = {"WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    # each process sets its own thread count (cores / nproc): OpenMP's own default would give
    # every process all the cores
    ctx = mp.start_processes(_worker, args=(target, args, env), nprocs=nproc, join=False,
                             start_method="spawn")
    try:
        while True:
            try:
                if ctx.join(grace_period=grace_s):
                    return 0, None
            except mp.ProcessExitedException as err:
                failed = err.exit_code
                if failed is not None and failed < 0:
                    name = signal.Signals(-failed).name if -failed in signal.valid_signals() \
                        else str(-failed)
                    return 1, f"rank {err.error_index} was killed ({name}); the others stopped"
                return failed or 1, None
            except mp.ProcessRaisedException as err:  # a bug in target: its traceback
                return 1, str(err)
    except KeyboardInterrupt as err:
        # Ctrl-C reached every process of the terminal's group; SIGTERM only this one, so it
        # is passed on: rank 0 saves its checkpoint either way
        from ..errors import interrupt_code

        if interrupt_code(err) == 143:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
        for p in ctx.processes:
            p.join(grace_s)
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
        return interrupt_code(err), None
