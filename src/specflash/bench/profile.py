"""`specflash bench --profile`: where the time of a speculative cycle goes on real-size architectures.

Random weights, real shapes (see `shapes.py`). Measured: plain decoding ms/token against the
memory-bandwidth floor (bytes of the weights read per token / measured copy bandwidth), target forward
time by number of tree tokens, draft time per cycle with and without latent compression, and the cycle
time and speed-up these imply for a given tau: speed-up = tau * t_token / (t_draft + t_verify). The
implied speed-up is an upper bound: a real cycle also pays for acceptance and cache compaction.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from specflash.draft import Draft, DraftConfig, Drafter
from specflash.generate import autoregressive_generate
from specflash.targets import Target
from specflash.timing import timings
from specflash.tree import TreeConfig, grow


def _timed(run: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """Median seconds of `repeats` runs after one warm-up, with the GPU synchronised."""
    return statistics.median(timings(run, device, repeats))


def copy_bandwidth(device: torch.device, megabytes: int) -> float:
    """Bytes per second moved by a device-local copy (read + write)."""
    source = torch.empty(megabytes * 2**20, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    seconds = _timed(lambda: target.copy_(source), device, repeats=5)
    return 2 * source.numel() / seconds


def decode_weight_bytes(target: Any) -> int:
    """Bytes of the weights one decoding step reads: the text decoder and the LM head."""
    decoder = target.family.decoder
    head = target.model.get_output_embeddings()
    return sum(p.numel() * p.element_size() for module in (decoder, head) for p in module.parameters())


def profile(
    target: Target,
    inputs: dict[str, torch.Tensor],
    tree_sizes: tuple[int, ...] = (1, 8, 16, 32, 64, 128),
    new_tokens: int = 32,
    tree: TreeConfig | None = None,
    flash: DraftConfig | None = None,
    taus: tuple[float, ...] = (2.0, 3.0, 4.0),
) -> dict[str, Any]:
    """Timings of `target` on `inputs` (batch 1); see the module docstring."""
    tree = tree or TreeConfig()
    flash = flash or DraftConfig(k=3, latents=64)
    where = target.device
    bandwidth = copy_bandwidth(where, 1024 if where.type == "cuda" else 256)
    weights = decode_weight_bytes(target)
    plain = autoregressive_generate(target, inputs, max_new_tokens=new_tokens, stop_token_ids=[])
    token_seconds = (plain.stats.wall_time - plain.stats.prefill_time) / (new_tokens - 1)

    batch = target.prepare(inputs)
    state, prefill = target.prefill(batch)
    first = prefill.logits.argmax(-1)
    text_token = int(batch["input_ids"][0, -1])  # any ordinary token of this vocabulary
    verify = {}
    for size in sorted({*tree_sizes, tree.total_tokens + 1}):
        chain = torch.ones(size, size, dtype=torch.bool, device=where).tril()[None]
        depths = torch.arange(size, device=where)[None]
        tokens = torch.full((1, size), text_token, device=where)

        def forward(tokens=tokens, chain=chain, depths=depths, size=size) -> None:
            target.verify(state, tokens, chain, depths)
            empty = torch.zeros(1, 0, dtype=torch.long, device=where)
            target.keep(state, size, empty, torch.zeros(1, dtype=torch.long, device=where))

        verify[size] = _timed(forward, where)

    drafts = {}
    for name, config in (("eagle", DraftConfig()), ("flash", flash)):
        drafter = Drafter(Draft.for_target(target, config), target)
        start_seconds = _timed(lambda drafter=drafter: drafter.start(prefill, first), where)
        root_logp = drafter.start(prefill, first)

        def draft_tree(drafter=drafter, root_logp=root_logp) -> None:
            drafter.begin_tree()
            grow(tree, first, root_logp, drafter.step)
            drafter.end_tree()

        features = prefill.features[:, -4:]
        tokens = torch.full((1, 4), text_token, device=where)
        count = torch.tensor([4], device=where)

        def catch_up(drafter=drafter, features=features, tokens=tokens, count=count) -> None:
            drafter.catch_up(features, tokens, count)
            drafter.cache.truncate(drafter.cache.length - 4)
            drafter.valid = drafter.valid[:, :-4]
            drafter.next_position = drafter.next_position - 4

        cycle = _timed(draft_tree, where) + _timed(catch_up, where)
        drafts[name] = {
            "config": {"k": config.k, "latents": config.latents},
            "parameters": drafter.draft.parameter_counts(),
            "cache_entries_after_prefill": drafter.cache.length,
            "prefill_ms": 1000 * start_seconds,
            "draft_ms_per_cycle": 1000 * cycle,
        }
    verify_ms = 1000 * verify[tree.total_tokens + 1]
    for entry in drafts.values():
        entry["implied"] = [
            {
                "tau": tau,
                "cycle_ms": entry["draft_ms_per_cycle"] + verify_ms,
                "speedup": tau * 1000 * token_seconds / (entry["draft_ms_per_cycle"] + verify_ms),
            }
            for tau in taus
        ]
    return {
        "text_layers": target.text_config.num_hidden_layers,
        "prompt_tokens": int(batch["input_ids"].shape[1]),
        "dtype": str(target.dtype).removeprefix("torch."),
        "device": torch.cuda.get_device_name(0) if where.type == "cuda" else "cpu",
        "copy_bandwidth_gb_s": bandwidth / 1e9,
        "decode_weight_gb": weights / 1e9,
        "floor_ms_per_token": 1000 * weights / bandwidth,
        "plain_ms_per_token": 1000 * token_seconds,
        "verify_ms_by_tree_tokens": {str(k): 1000 * v for k, v in verify.items()},
        "verify_ms_at_tree_size": verify_ms,
        "tree": {"depth": tree.depth, "top_k": tree.top_k, "total_tokens": tree.total_tokens},
        "drafts": drafts,
    }
