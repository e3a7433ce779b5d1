"""Where and how model and selection work runs: the device and precision names every
command accepts, importable without torch."""

DEVICES = ("auto", "cpu", "cuda")  # auto: CUDA when present, else the CPU
PRECISIONS = ("auto", "fp32", "bf16")  # auto: bf16 where the device computes it natively
