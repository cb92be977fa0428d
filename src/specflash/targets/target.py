"""`specflash.Target`: a stock Hugging Face model seen through its family adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from specflash.devices import resolve_device
from specflash.targets.family import Family, VisualSpan
from specflash.targets.llava import LlavaFamily
from specflash.targets.qwen2_5_vl import Qwen2_5_VLFamily
from specflash.targets.state import TargetState
from specflash.targets.text import TextFamily

FAMILIES: tuple[type[Family], ...] = (LlavaFamily, Qwen2_5_VLFamily, TextFamily)
SUPPORTED = ", ".join(t for family in FAMILIES for t in family.model_types)
# Attention kernels that honour an arbitrary additive 4-D mask (tree verification needs one).
TREE_MASK_KERNELS = ("sdpa", "eager")


@dataclass
class Prefill:
    logits: torch.Tensor  # [B, V] float32, next-token logits after the prompt
    features: torch.Tensor  # [B, L, D] final hidden states f
    embeds: torch.Tensor  # [B, L, D] input embeddings e (visual features at visual positions)
    attention_mask: torch.Tensor  # [B, L] 1 for prompt tokens, 0 for left padding
    spans: list[list[VisualSpan]]


def _load_processor(path_or_id: str | Path) -> Any:
    """The checkpoint's processor, else its tokenizer, else None (a bare model still decodes ids). A
    processor that needs a package not installed is an error: its bare tokenizer would drop the images."""
    import transformers

    for loader in (transformers.AutoProcessor, transformers.AutoTokenizer):
        try:
            return loader.from_pretrained(path_or_id)
        except ImportError as error:
            said = " ".join(str(error).split())
            hint = " (pip install torchvision, built for your torch)" if "torchvision" in said.lower() else ""
            raise ValueError(
                f"the processor of {path_or_id} needs a package that is not installed; install it{hint}. "
                f"transformers says: {said}"
            ) from error
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return None


def family_for(model: nn.Module) -> type[Family]:
    model_type = model.config.model_type
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise ValueError(f"model type {model_type!r} is not supported; supported model types: {SUPPORTED}")


# Rotary embeddings whose frequencies follow the longest position seen in a forward.
POSITION_DEPENDENT_ROPE = frozenset({"dynamic", "longrope"})


def _rope_types(parameters: Any) -> set[str]:
    """The rope types a config's rope_parameters name: one dict, or one per attention layer type."""
    if not isinstance(parameters, dict):
        return set()
    if "rope_type" in parameters:
        return {parameters["rope_type"]}
    return {p["rope_type"] for p in parameters.values() if isinstance(p, dict) and "rope_type" in p}


class Target:
    """The model whose output speculative decoding must reproduce exactly."""

    def __init__(self, model: nn.Module, processor: Any = None) -> None:
        self.family: Family = family_for(model)(model)
        kernel = model.config._attn_implementation
        if kernel not in TREE_MASK_KERNELS:
            raise ValueError(
                f"the model uses attention kernel {kernel!r}, which ignores tree masks; load it with "
                f"attn_implementation set to one of {TREE_MASK_KERNELS}"
            )
        text = self.family.text_config
        layer_types = getattr(text, "layer_types", None)
        windowed = "sliding_attention" in layer_types if layer_types else getattr(text, "sliding_window", None)
        if windowed:
            # Tree masks and cache compaction assume every layer sees the whole context.
            raise ValueError(
                f"model type {model.config.model_type!r} uses sliding-window attention here, which specflash "
                "does not support; use a configuration with full attention in every layer"
            )
        rope_types = _rope_types(getattr(text, "rope_parameters", None))
        if rope_types & POSITION_DEPENDENT_ROPE:
            # These rescale the frequencies by the largest position in a forward: a tree's deeper nodes
            # (or a batch's other rows) would change the root's, which plain decoding never does.
            raise ValueError(
                f"model type {model.config.model_type!r} uses {'/'.join(sorted(rope_types))} rotary embeddings, "
                "whose frequencies depend on the positions in each forward, which specflash does not support; "
                "use a configuration with a static rope type (default, linear, yarn, llama3)"
            )
        self.model = model.eval()
        self.processor = processor

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        dtype: torch.dtype | str | None = None,
        device: str | None = None,
        processor: Any = None,
    ) -> Target:
        """Load a checkpoint (hub id or directory) with its processor, or with `processor` when given;
        dtype defaults to float32 on CPU and bfloat16 on CUDA."""
        import transformers

        device = resolve_device(device)
        if dtype is None:
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        elif isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        config = transformers.AutoConfig.from_pretrained(path_or_id)
        model_type = config.model_type
        classes = {
            "llava": transformers.LlavaForConditionalGeneration,
            "qwen2_5_vl": transformers.Qwen2_5_VLForConditionalGeneration,
            "qwen2_vl": transformers.Qwen2VLForConditionalGeneration,
        }
        if model_type not in SUPPORTED.split(", "):
            raise ValueError(f"{path_or_id}: model type {model_type!r} is not supported; supported: {SUPPORTED}")
        model_class = classes.get(model_type, transformers.AutoModelForCausalLM)
        if processor is None:  # before the weights: a missing package should not wait for gigabytes
            processor = _load_processor(path_or_id)
        model = model_class.from_pretrained(path_or_id, dtype=dtype, attn_implementation="sdpa").to(device)
        return cls(model, processor)

    # -- facts about the model -------------------------------------------------------------------
    @property
    def family_name(self) -> str:
        return self.family.name

    @property
    def model_type(self) -> str:
        return self.model.config.model_type

    @property
    def hidden_size(self) -> int:
        return self.family.text_config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]

    @property
    def max_positions(self) -> int:
        return self.family.text_config.max_position_embeddings

    @property
    def device(self) -> torch.device:
        return self.model.get_output_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_output_embeddings().weight.dtype

    @property
    def stop_token_ids(self) -> list[int]:
        # As Hugging Face generate: only the generation config says when to stop.
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            return []
        return [eos] if isinstance(eos, int) else list(eos)

    @property
    def text_config(self) -> Any:
        return self.family.text_config

    # -- pieces the draft shares (frozen) -----------------------------------------------------------
    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(token_ids)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.get_output_embeddings()(features).float()

    # -- decoding -------------------------------------------------------------------------------------
    def prepare(self, inputs: Any) -> dict[str, torch.Tensor]:
        """Check a processor output and move it to the model's device."""
        if "input_ids" not in inputs:
            raise ValueError("inputs must hold 'input_ids' (pass the processor's or tokenizer's output)")
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in dict(inputs).items()}
        for key in ("input_ids", "attention_mask"):
            if batch.get(key) is not None:
                value = torch.as_tensor(batch[key], device=self.device)
                if value.ndim not in (1, 2) or value.dtype.is_floating_point:
                    raise ValueError(f"{key} must be integers of shape [batch, length], got {tuple(value.shape)}")
                batch[key] = value if value.ndim == 2 else value[None]
        ids = batch["input_ids"]
        if batch.get("attention_mask") is None:
            batch["attention_mask"] = torch.ones_like(ids)
        if batch["attention_mask"].shape != ids.shape:
            raise ValueError(
                f"attention_mask {tuple(batch['attention_mask'].shape)} does not match input_ids {tuple(ids.shape)}"
            )
        mask = batch["attention_mask"]
        if ids.shape[1] == 0 or bool((mask.sum(-1) == 0).any()):
            raise ValueError("the prompt is empty: every row needs at least one token")
        if bool((mask[:, -1] == 0).any()):
            raise ValueError("rows must be left-padded (set tokenizer.padding_side = 'left')")
        if "pixel_values" in batch and torch.is_floating_point(batch["pixel_values"]):
            batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        self.family.validate(batch)
        return batch

    @torch.inference_mode()
    def prefill(self, inputs: dict[str, torch.Tensor]) -> tuple[TargetState, Prefill]:
        cache = DynamicCache(config=self.family.text_config)
        out = self.family.prefill(inputs, cache)
        mask = inputs["attention_mask"]
        state = TargetState(cache, mask.bool(), mask.long().sum(-1), out.rope_deltas.to(self.device))
        prefill = Prefill(
            logits=self.logits(out.hidden[:, -1]),
            features=out.hidden,
            embeds=out.embeds,
            attention_mask=mask,
            spans=self.family.visual_spans(inputs),
        )
        return state, prefill

    @torch.inference_mode()
    def verify(
        self, state: TargetState, tokens: torch.Tensor, tree_mask: torch.Tensor, depths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward over a token tree per row.

        tokens [B, T], tree_mask [B, T, T] (query attends key: ancestor or self), depths [B, T] (root 0).
        Returns logits [B, T, V] (float32) and final hidden states [B, T, D]. The tree stays in the cache
        until `keep` compacts it to the accepted path.
        """
        mask = state.attention_mask(tree_mask, self.dtype)
        text_positions = state.lengths[:, None] + depths
        out = self.family.decoder(
            inputs_embeds=self.embed(tokens),
            attention_mask=mask,
            position_ids=self.family.positions(text_positions, state.rope_deltas),
            cache=state.cache,
            use_cache=True,
        )
        state.append(tokens.shape[1])
        return self.logits(out.last_hidden_state), out.last_hidden_state

    @staticmethod
    @torch.inference_mode()
    def keep(state: TargetState, tree_size: int, keep_index: torch.Tensor, keep_count: torch.Tensor) -> None:
        """Keep only the accepted path of the last verified tree in the cache."""
        state.keep(tree_size, keep_index, keep_count)
