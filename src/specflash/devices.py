"""One reading of a user's device choice, with a plain error for a device this machine does not have."""

from __future__ import annotations

import torch

HELP = "use cpu, cuda or cuda:N"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device`, or CUDA when available and CPU otherwise; ValueError for a name torch does not know or a
    device that is not here (instead of torch's error from deep inside the first transfer)."""
    if device is None or device == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; {HELP}") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            built = torch.version.cuda is not None or getattr(torch.version, "hip", None) is not None
            why = "no GPU is visible" if built else "this torch is built without CUDA"
            raise ValueError(f"device {device!r} is not available: {why}; use --device cpu")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} is not available: {torch.cuda.device_count()} GPU(s) visible")
    elif chosen.type != "cpu":
        raise ValueError(f"device {device!r} is not supported; {HELP}")
    return chosen
