"""Where model and selection work runs: the one list of device names every command accepts."""

DEVICES = ("auto", "cpu", "cuda")  # auto: CUDA when present, else the CPU
