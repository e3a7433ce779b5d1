"""Where this process sits in a ``torchrun``/``accelerate launch`` run: the launcher's
environment (read without importing torch: a plain ``curate select`` must not pay for it)
and :class:`Ranks`, the process group over which ranks coordinate.

``torchrun`` and ``accelerate launch`` both set ``RANK``/``WORLD_SIZE`` (and the rendezvous
address); with ``WORLD_SIZE`` > 1 the ranks coordinate over a gloo group (embedding: only
barriers and a few integers, so it works whether the models sit on CPUs or GPUs; sharded
selection adds NCCL for its per-pick collectives on CUDA).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


def launched_world() -> int:
    """``WORLD_SIZE`` as the launcher set it (1 outside a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """Whether a launcher started this process (torchrun sets ``WORLD_SIZE`` even for one)."""
    return "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def launched_rank() -> int:
    """``RANK`` as the launcher set it (0 outside a launcher)."""
    return int(os.environ.get("RANK", "0"))


DIST_TIMEOUT_ENV = "CURATE_DIST_TIMEOUT"


def dist_timeout():
    """How long a rank waits for its peers in one collective (or the rendezvous) before it
    fails: ``CURATE_DIST_TIMEOUT`` seconds, default 600. A lost peer usually fails the
    collective at once (its sockets close); the timeout bounds the rest (a hung node)."""
    from datetime import timedelta

    return timedelta(seconds=float(os.environ.get(DIST_TIMEOUT_ENV, "600")))


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    group: Any = None
    owns_group: bool = False

    @classmethod
    def from_env(cls, backend: str = "gloo", single: bool = False) -> Ranks:
        """This process's rank; ``backend`` as torch.distributed spells it (``gloo``, or
        ``cpu:gloo,cuda:nccl`` for a group whose CUDA tensors travel over NCCL). With
        ``single``, a launcher's one-process run gets a group too."""
        world = launched_world()
        if world <= 1 and not (single and launched()):
            return cls()
        import torch.distributed as dist

        if dist.is_initialized():
            group = dist.new_group(backend=backend, timeout=dist_timeout())
            return cls(dist.get_rank(), dist.get_world_size(), group, False)
        dist.init_process_group(backend=backend, timeout=dist_timeout())
        return cls(dist.get_rank(), dist.get_world_size(), None, True)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def gather(self, value: int) -> list[int]:
        """``value`` from every rank, in rank order."""
        if self.world == 1:
            return [value]
        import torch
        import torch.distributed as dist

        parts = [torch.zeros(1, dtype=torch.long) for _ in range(self.world)]
        dist.all_gather(parts, torch.tensor([value], dtype=torch.long), group=self.group)
        return [int(p.item()) for p in parts]

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False
