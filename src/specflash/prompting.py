"""One rule, shared by inference and training dumps, for tokenizing a rendered chat prompt."""

from __future__ import annotations

from typing import Any


def adds_special_tokens(tokenizer: Any, text: str) -> bool:
    """Whether the tokenizer should add its special tokens to a prompt its chat template rendered: yes
    unless the template already wrote the BOS token. LLaVA-1.5's template writes none and the model was
    trained with one; templates that write it (Llama 3) must not get a second. Without a BOS token there
    is nothing to add."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and not text.startswith(bos)
