"""Data-parallel training over local CPU processes (torch.distributed with gloo).

Every process builds and runs its share of each batch; the processes add up their gradients, so each
takes the same optimizer step and the weights stay equal. The losses are normalised by the whole
batch's counts, so the summed gradient is the one-process gradient of the same batch. On the 2-core
development CPU two one-thread processes train faster than one two-thread process: much of a step of
these tiny models is work that one process does on one core (docs/world.md)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn


@dataclass(frozen=True)
class Group:
    """This process's place among `size` processes training one model together."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """The process that reports progress and writes checkpoints."""
        return self.rank == 0

    def share(self, indices: Sequence[int]) -> Sequence[int]:
        """This process's part of a batch's sample indices."""
        return indices[self.rank :: self.size]

    def total(self, counts: torch.Tensor) -> torch.Tensor:
        """counts summed over the processes."""
        if self.size > 1:
            dist.all_reduce(counts)
        return counts

    def sum_gradients(self, parameters: Sequence[nn.Parameter], loss: torch.Tensor) -> float:
        """Replace each gradient by its sum over the processes and return the loss summed over them, in
        one exchange. A parameter that no process has a gradient for keeps none, as in one process
        (AdamW skips it; a zero gradient would still move it); one that some processes lack a gradient
        for gets the sum of the others'."""
        if self.size == 1:
            return loss.item()
        dtype = parameters[0].dtype
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in parameters]
        has_grad = torch.tensor([p.grad is not None for p in parameters], dtype=dtype)
        flat = torch.cat([g.flatten() for g in grads] + [has_grad, loss.detach().reshape(1).to(dtype)])
        dist.all_reduce(flat)
        sizes = [p.numel() for p in parameters]
        *summed, anyone_had, total = flat.split([*sizes, len(parameters), 1])
        for p, g, had in zip(parameters, summed, anyone_had.tolist(), strict=True):
            p.grad = g.view_as(p) if had else None
        return total.item()


SINGLE = Group()


def _exit_with(parent: int) -> None:
    """Stop this process when the process that started it is gone (killed, say), rather than train on
    unseen."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _join(rank: int, size: int, rendezvous: str, threads: int, work: Callable, args: tuple) -> None:
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=size)
    try:
        work(Group(rank, size), *args)
    finally:
        dist.destroy_process_group()


def run_parallel(work: Callable, processes: int, threads: int, *args) -> None:
    """Run work(group, *args) in `processes` new processes of `threads` torch threads each. An error in
    one stops them all and is raised here (as torch's ProcessRaisedException, with its traceback); an
    interrupt or termination of this process stops them too."""
    # a terminated run stops its processes and removes its rendezvous file, as an interrupted one does
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rendezvous = str(Path(tmp) / "rendezvous")
            spawn_args = (processes, rendezvous, threads, work, args)
            context = mp.spawn(_join, args=spawn_args, nprocs=processes, join=False)
            try:
                while not context.join():
                    pass
            finally:
                for process in context.processes:
                    if process.is_alive():
                        process.terminate()
    finally:
        signal.signal(signal.SIGTERM, previous)
