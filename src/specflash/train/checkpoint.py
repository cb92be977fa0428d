"""Trainer checkpoints without pickles: a draft directory (config.json + model.safetensors), the optimizer
moments as safetensors keyed by parameter name, and the loop position as JSON.

    OUT/checkpoints/step-000100/{config.json, model.safetensors, optimizer.safetensors, trainer_state.json}

A checkpoint is written under a temporary name and renamed when complete, so a killed run never leaves
a half checkpoint that --resume would pick.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from specflash.draft import Draft

CHECKPOINTS = "checkpoints"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"


def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith("step-") and not p.name.endswith(".tmp")]
    return sorted((p for p in found if (p / STATE_FILE).is_file()), key=lambda p: p.name)


def save_checkpoint(
    out: Path, draft: Draft, optimizer: torch.optim.Optimizer, state: dict[str, Any], keep: int
) -> Path:
    final = out / CHECKPOINTS / f"step-{state['step']:06d}"
    temporary = final.with_name(final.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    draft.save_pretrained(temporary)
    save_file(optimizer_moments(draft, optimizer), str(temporary / OPTIMIZER_FILE))
    (temporary / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(temporary, final)
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old)
    return final


def optimizer_moments(draft: Draft, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam(W) per-parameter state, keyed "<parameter name>.<exp_avg|exp_avg_sq|step>"."""
    names = {id(p): n for n, p in draft.named_parameters()}
    moments = {}
    for param, state in optimizer.state.items():
        for key, value in state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(float(value))
            moments[f"{names[id(param)]}.{key}"] = tensor.detach().cpu().contiguous()
    return moments


def load_optimizer_moments(draft: Draft, optimizer: torch.optim.Optimizer, path: Path) -> None:
    moments = load_file(str(path))
    device = next(draft.parameters()).device
    for name, param in draft.named_parameters():
        state = {k.removeprefix(f"{name}."): v for k, v in moments.items() if k.rsplit(".", 1)[0] == name}
        if not state:
            continue
        optimizer.state[param] = {k: v if k == "step" else v.to(device) for k, v in state.items()}


def load_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text())
