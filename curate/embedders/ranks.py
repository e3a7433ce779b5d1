"""This process's place in a data-parallel embedding run.

``torchrun`` and ``accelerate launch`` both set ``RANK``/``WORLD_SIZE`` (and the rendezvous
address); with ``WORLD_SIZE`` > 1 the ranks coordinate over a gloo group, which carries
only barriers and a few integers, so it works whether the models sit on CPUs or GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


def launched_world() -> int:
    """``WORLD_SIZE`` as torchrun/accelerate set it (1 outside a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    return int(os.environ.get("RANK", "0"))


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    group: Any = None
    owns_group: bool = False

    @classmethod
    def from_env(cls, backend: str = "gloo") -> Ranks:
        """This process's rank; ``backend`` as torch.distributed spells it (``gloo``, or
        ``cpu:gloo,cuda:nccl`` for a group whose CUDA tensors travel over NCCL)."""
        world = launched_world()
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if dist.is_initialized():
            group = dist.new_group(backend=backend)
            return cls(dist.get_rank(), dist.get_world_size(), group, False)
        dist.init_process_group(backend=backend)
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
