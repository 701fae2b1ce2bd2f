"""Cached lower layers: an encoder whose bottom L - k layers are frozen runs them once per catalogue, and training
runs only the top k layers (with their LoRA adapters) from the cached hidden states.

`lower_states` encodes item texts up to the split (the hidden states entering layer L - k, stored in bf16 / fp16
or fp32); `top_forward` runs the top k layers from such states and pools, exactly as the full encoder would (the
same attention mask, positions and final norm). Works for BERT-style encoders (the embeddings are bypassed: the
states go in as the input of layer L - k) and decoder-only ones (the states enter as `inputs_embeds`; rotary
positions are recomputed from the sequence length, as in the full forward).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from textrec.model.encoders import TextEncoder, layer_list, layer_stack_path, pool


class _Passthrough(nn.Module):
    """Stands in for a BERT-style embeddings module: the given `inputs_embeds` (the cached states) pass unchanged."""

    def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
        return inputs_embeds


def _base(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _parent_of_layers(model: nn.Module) -> tuple[nn.Module, str]:
    """The module holding the layer stack, and the stack's attribute name."""
    *parents, name = layer_stack_path(model).split(".")
    parent = model
    for part in parents:
        parent = getattr(parent, part)
    return parent, name


def num_layers(encoder: TextEncoder) -> int:
    return len(layer_list(_base(encoder.model)))


@contextmanager
def _top_layers_only(encoder: TextEncoder, k: int):
    """Within the block, the encoder runs only its top `k` layers, from states given as `inputs_embeds`."""
    base = _base(encoder.model)
    parent, attr = _parent_of_layers(base)
    full = getattr(parent, attr)
    setattr(parent, attr, nn.ModuleList(list(full)[len(full) - k :]))
    embeddings = getattr(base, "embeddings", None)  # BERT-style: position / type embeddings would be added again
    if embeddings is not None:
        base.embeddings = _Passthrough()
    try:
        yield
    finally:
        setattr(parent, attr, full)
        if embeddings is not None:
            base.embeddings = embeddings


def check_split(encoder: TextEncoder, k: int) -> int:
    """The index of the first top layer (L - k); `k` must leave at least one layer below and one above."""
    total = num_layers(encoder)
    if not 0 < k < total:
        raise ValueError(f"model.lora_top_layers: must be between 1 and {total - 1} for this encoder, got {k}")
    return total - k


@torch.no_grad()
def lower_states(encoder: TextEncoder, input_ids: torch.Tensor, attention_mask: torch.Tensor, k: int) -> torch.Tensor:
    """Hidden states [B, T, H] entering the top `k` layers (the output of layer L - k - 1)."""
    split = check_split(encoder, k)
    out = encoder.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    return out.hidden_states[split]


def top_forward(encoder: TextEncoder, states: torch.Tensor, attention_mask: torch.Tensor, k: int) -> torch.Tensor:
    """Pooled vectors [B, H] from the cached states of the top `k` layers: the full forward's result, running (and
    training) only those layers."""
    check_split(encoder, k)
    with _top_layers_only(encoder, k):
        out = encoder.model(inputs_embeds=states.to(encoder.model.dtype), attention_mask=attention_mask)
    return pool(out.last_hidden_state, attention_mask, encoder.pooling)


class LowerStateCache:
    """The states entering the top k layers, for every item of a catalogue: computed once (the bottom layers are
    frozen, so they never go stale), kept right-padded to the longest item ([N, T, H] in `dtype`, and the masks).
    `encode(ids)` runs the top k layers on those rows (with gradient while training): the pooled vectors the full
    encoder would give, at the cost of k layers."""

    def __init__(self, encoder: TextEncoder, item_tokens, batch_size: int = 256, dtype=torch.float32, device=None):
        self.k = encoder.cached_top_layers
        check_split(encoder, self.k)
        width = max((len(ids) for ids in item_tokens.input_ids), default=1) or 1
        hidden = encoder.hidden_size
        self.states = torch.zeros(len(item_tokens), width, hidden, dtype=dtype, device=device)
        self.mask = torch.zeros(len(item_tokens), width, dtype=torch.long, device=device)
        was_training = encoder.training
        encoder.eval()  # dropout off: the cached states are the eval-mode states of the frozen layers
        try:
            for start in range(0, len(item_tokens), batch_size):
                rows = list(range(start, min(start + batch_size, len(item_tokens))))
                input_ids, mask = item_tokens.batch(rows, device=device)
                states = lower_states(encoder, input_ids, mask, self.k)
                self.states[start : start + len(rows), : states.shape[1]] = states.to(dtype)
                self.mask[start : start + len(rows), : mask.shape[1]] = mask
        finally:
            encoder.train(was_training)

    def __len__(self) -> int:
        return len(self.states)

    def encode(self, encoder: TextEncoder, ids: torch.Tensor) -> torch.Tensor:
        """Pooled text vectors [len(ids), H] of catalogue rows `ids`, through the top k layers."""
        rows = ids.to(self.states.device)
        mask = self.mask[rows]
        width = int(mask.sum(1).max().clamp_min(1))  # right-padded: the batch's longest item decides the width
        states = self.states[rows, :width].to(ids.device)
        return top_forward(encoder, states, mask[:, :width].to(ids.device), self.k)
