"""Where and how model and selection work runs: the device and precision settings every
command accepts, declared once here (names, default, parser), importable without torch.

A precision is parsed once, where it enters (the command line's choices, the Python API,
``params.yaml``), with :func:`parse_precision`; the library below takes a :data:`Precision`
and resolves ``auto`` for the device it runs on (:func:`curate.models.resolve_precision`).
"""

from __future__ import annotations

from typing import Literal, get_args

from curate.errors import UsageError

Device = Literal["auto", "cpu", "cuda"]  # auto: CUDA when present, else the CPU
Precision = Literal["auto", "fp32", "bf16"]  # auto: bf16 where the device computes it natively
ComputePrecision = Literal["fp32", "bf16"]  # a Precision resolved for a device

DEVICES: tuple[str, ...] = get_args(Device)
PRECISIONS: tuple[str, ...] = get_args(Precision)
DEFAULT_DEVICE: Device = "auto"
DEFAULT_PRECISION: Precision = "auto"


def parse_precision(value: object) -> Precision:
    """``value`` as a :data:`Precision`; anything else is a :class:`UsageError` naming the
    choices."""
    for choice in get_args(Precision):
        if value == choice:
            return choice
    raise UsageError(f"precision {value!r}: choose from {', '.join(PRECISIONS)}")
