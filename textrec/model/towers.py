"""The two-tower model: an item tower over item text (and/or item ids) and a user tower over the history."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from textrec.model.encoders import TextEncoder

USER_TOWERS = ("sequence", "text")
MIN_TEMPERATURE = 0.01
SIMILARITIES = ("cosine", "dot")


class SequenceTower(nn.Module):
    """A small causal transformer over the history's item vectors (SASRec-style, pre-norm).

    Histories are left-padded, so the last position is the most recent item; positions are counted from the right
    so that the most recent item always gets the same position embedding.
    """

    def __init__(
        self, dim: int, max_len: int, layers: int = 2, heads: int = 2, dropout: float = 0.2, position_std=0.02
    ):
        super().__init__()
        self.max_len = max_len
        self.heads = heads
        self.positions = nn.Embedding(max_len, dim)
        if position_std is not None:  # None: torch's N(0, 1)
            nn.init.normal_(self.positions.weight, std=position_std)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=4 * dim, dropout=dropout, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """vectors [B, L, D], mask [B, L] (True = real item) -> states [B, L, D]; state i has seen items <= i."""
        batch, length, _ = vectors.shape
        if length > self.max_len:
            raise ValueError(f"history of length {length} exceeds max_history={self.max_len}")
        pos = torch.arange(self.max_len - length, self.max_len, device=vectors.device)
        hidden = self.dropout(vectors + self.positions(pos))
        causal = torch.ones(length, length, dtype=torch.bool, device=vectors.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=vectors.device)
        allowed = causal & (mask[:, None, :] | eye)  # a padded row attends to itself only, never NaN
        blocked = (~allowed).repeat_interleave(self.heads, dim=0)
        zeros = torch.zeros_like(blocked, dtype=hidden.dtype)
        attn_mask = zeros.masked_fill(blocked, float("-inf"))
        return self.norm(self.blocks(hidden, mask=attn_mask))


class TwoTowerModel(nn.Module):
    """Item tower, user tower and a scoring head.

    Item vector = Linear(text encoder(item text)) [if an item encoder is given] + id embedding [if id_embedding].
    User vector = SequenceTower(item vectors of the history) [user_tower="sequence"] or
    Linear(user encoder(history rendered as text)) [user_tower="text"]; `user_encoder=None` with a text user tower
    shares the item encoder.
    Score = similarity(user, item) / temperature [+ the item's bias], with cosine (normalised) or dot similarity;
    the temperature is fixed or learned (`learn_temperature`).
    The optional per-item bias (`item_bias`) holds popularity as a separate logit, so that the vector direction is
    free to carry content; items without a trained id (new items, added by text) get bias 0.

    New items: an item without a trained id is served by its text alone. Two training options keep that part good:
    `id_dropout` (each step, a share of items is treated as new: no id part and no bias) and `text_loss_weight`
    (an auxiliary loss that ranks the targets with text-only item vectors). `user_content` adds a content path to
    the sequence user tower: the unit-length mean of the last N history item vectors, with a learned scale, summed
    with the transformer state, so a user is never only what the transformer learned on one catalogue.
    """

    def __init__(
        self,
        num_items: int,
        dim: int = 64,
        item_encoder: TextEncoder | None = None,
        user_tower: str = "sequence",
        user_encoder: TextEncoder | None = None,
        id_embedding: bool = False,
        similarity: str = "cosine",
        temperature: float = 0.05,
        max_history: int = 50,
        seq_layers: int = 2,
        seq_heads: int = 2,
        seq_dropout: float = 0.2,
        seq_position_std: float | None = 0.02,
        item_bias: bool = False,
        id_dropout: float = 0.0,
        text_loss_weight: float = 0.0,
        user_content: int = 0,
        learn_temperature: bool = False,
    ):
        super().__init__()
        if user_tower not in USER_TOWERS:
            raise ValueError(f"user_tower: expected one of {USER_TOWERS}, got {user_tower!r}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity: expected one of {SIMILARITIES}, got {similarity!r}")
        if item_encoder is None and not id_embedding:
            raise ValueError("the item tower needs text (an item encoder) or id_embedding=True, or both")
        if user_tower == "text" and item_encoder is None and user_encoder is None:
            raise ValueError("user_tower='text' needs a text encoder")
        if temperature <= 0:
            raise ValueError(f"temperature: must be > 0, got {temperature}")
        if (id_dropout > 0 or text_loss_weight > 0) and not (item_encoder is not None and id_embedding):
            raise ValueError("id_dropout and text_loss_weight need an item tower with both text and id_embedding")
        if user_content and user_tower != "sequence":
            raise ValueError("user_content: the content path belongs to the sequence user tower")
        self.num_items = num_items
        self.dim = dim
        self.user_tower = user_tower
        self.similarity = similarity
        self._temperature = temperature
        # learned as log(temperature), floored at MIN_TEMPERATURE (CLIP's logit scale is capped alike)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature))) if learn_temperature else None
        self.max_history = max_history
        self.id_dropout = id_dropout
        self.text_loss_weight = text_loss_weight
        self.user_content = user_content
        self.item_encoder = item_encoder
        self.item_proj = nn.Linear(item_encoder.hidden_size, dim) if item_encoder is not None else None
        self.id_embedding = nn.Embedding(num_items, dim) if id_embedding else None
        # Which id rows were trained: an item never seen in training has no id part (its row is still random), and
        # an ID-only model cannot rank it at all (see `rankable_items`).
        self.register_buffer("id_trained", torch.ones(num_items, dtype=torch.bool))
        if self.id_embedding is not None:
            nn.init.normal_(self.id_embedding.weight, std=0.02 if item_encoder is not None else 1.0 / dim**0.5)
        if user_tower == "sequence":
            self.sequence = SequenceTower(dim, max_history, seq_layers, seq_heads, seq_dropout, seq_position_std)
            self.user_encoder, self.user_proj = None, None
            # the content path's weight; the transformer state leaves a LayerNorm with norm about sqrt(dim)
            self.content_scale = nn.Parameter(torch.tensor(float(dim) ** 0.5)) if user_content else None
        else:
            self.sequence = None
            self.user_encoder = user_encoder  # None = shared with the item tower
            hidden = (user_encoder or item_encoder).hidden_size
            self.user_proj = nn.Linear(hidden, dim)
        self.item_bias = nn.Parameter(torch.zeros(num_items)) if item_bias else None
        self.rating_head = nn.Linear(1, 1)  # maps a score to a rating, used by the MSE loss only

    @property
    def temperature(self) -> float | torch.Tensor:
        """The score's temperature: the configured float, or the learned one (a 0-d tensor) with learn_temperature."""
        if self.log_temperature is None:
            return self._temperature
        return self.log_temperature.exp().clamp_min(MIN_TEMPERATURE)

    # ----- item tower -----
    @property
    def has_text(self) -> bool:
        return self.item_encoder is not None

    def item_text_vectors(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled encoder output [B, H] for item texts (before the projection)."""
        return self.item_encoder(input_ids, attention_mask)

    def item_vectors(self, item_ids: torch.Tensor, text_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """Item vectors [..., D] from item indices and (if the tower has text) pooled text vectors [..., H].

        Items outside the trained id range (added later, by text) get no id part.
        """
        out = None
        if self.item_proj is not None:
            if text_vectors is None:
                raise ValueError("this item tower reads text: pass text_vectors")
            out = self.item_proj(text_vectors.to(self.item_proj.weight.dtype))
        if self.id_embedding is not None:
            rows = item_ids.clamp(0, self.num_items - 1)
            known = (item_ids >= 0) & (item_ids < self.num_items) & self.id_trained[rows]
            ids = self.id_embedding(rows) * known.unsqueeze(-1)
            out = ids if out is None else out + ids
        return out

    def bias(self, item_ids: torch.Tensor) -> torch.Tensor | None:
        """The per-item logit bias [...] of item indices (0 for items without a trained id), or None without one."""
        if self.item_bias is None:
            return None
        rows = item_ids.clamp(0, self.num_items - 1)
        known = (item_ids >= 0) & (item_ids < self.num_items) & self.id_trained[rows]
        return self.item_bias[rows] * known

    def mark_trained_items(self, item_ids) -> None:
        """Record which item ids occur in the training data (all others get no id part)."""
        self.id_trained.zero_()
        self.id_trained[torch.as_tensor(item_ids, dtype=torch.long)] = True

    def rankable_items(self, num_items: int) -> torch.Tensor | None:
        """Items the model can score: all of them with a text tower; only trained ids for an ID-only model."""
        if self.has_text:
            return None
        mask = torch.zeros(num_items, dtype=torch.bool, device=self.id_trained.device)
        n = min(num_items, self.num_items)
        mask[:n] = self.id_trained[:n]
        return mask

    def encode_items(self, item_ids: torch.Tensor, input_ids=None, attention_mask=None) -> torch.Tensor:
        text = self.item_text_vectors(input_ids, attention_mask) if self.has_text else None
        return self.item_vectors(item_ids, text)

    # ----- user tower -----
    def user_states(self, history_vectors: torch.Tensor, history_mask: torch.Tensor) -> torch.Tensor:
        """Sequence tower states for every prefix: [B, L, D] (training uses all of them), plus the content path
        (the unit mean of the last `user_content` real items up to each position) when the tower has one."""
        states = self.sequence(history_vectors, history_mask)
        if not self.user_content:
            return states
        mask = history_mask.unsqueeze(-1).to(states.dtype)
        unit = F.normalize(history_vectors.to(states.dtype), dim=-1) * mask
        total, count = unit.cumsum(1), mask.cumsum(1)
        k = self.user_content
        if k < unit.shape[1]:  # a window of the last k positions: subtract the sums up to position i - k
            total = total - F.pad(total[:, :-k], (0, 0, k, 0))
            count = count - F.pad(count[:, :-k], (0, 0, k, 0))
        content = F.normalize(total / count.clamp_min(1.0), dim=-1)
        return states + self.content_scale * content

    def encode_users_sequence(self, history_vectors: torch.Tensor, history_mask: torch.Tensor) -> torch.Tensor:
        return self.user_states(history_vectors, history_mask)[:, -1]

    def encode_users_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        encoder = self.user_encoder if self.user_encoder is not None else self.item_encoder
        return self.user_proj(encoder(input_ids, attention_mask))

    # ----- scoring -----
    def score(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        item_ids: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B, D] x [C, D] -> [B, C] logits = similarity / temperature (+ the bias of `item_ids` [C], if given,
        + `offset` [C], e.g. a loss's -log q).

        The temperature scales the [B, D] users and the per-column terms enter the matrix product (addmm), so no
        elementwise pass runs over the [B, C] logits: on a CPU those passes cost more than the product itself."""
        if self.similarity == "cosine":
            users, items = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
        users = users / self.temperature
        column = self.bias(item_ids) if item_ids is not None else None
        if offset is not None:
            column = offset if column is None else column + offset
        if column is None:
            return users @ items.T
        return torch.addmm(column.to(users.dtype), users, items.T)

    def score_matrix(self, items: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The item side of `score` as one matrix, what an index searches: normalised items (cosine), and with an
        item bias one more column holding it; `score(u, items, ids)` equals `score_queries(u) @ score_matrix(items,
        ids).T`."""
        if self.similarity == "cosine":
            items = F.normalize(items, dim=-1)
        column = self.bias(item_ids) if item_ids is not None else None
        return items if column is None else torch.cat([items, column[:, None].to(items.dtype)], dim=1)

    def score_queries(self, users: torch.Tensor) -> torch.Tensor:
        """The user side of `score_matrix`: normalised (cosine) users / temperature, and a column of ones for the
        bias column when the model has an item bias."""
        if self.similarity == "cosine":
            users = F.normalize(users, dim=-1)
        users = users / self.temperature
        if self.item_bias is None:
            return users
        return torch.cat([users, torch.ones(len(users), 1, dtype=users.dtype, device=users.device)], dim=1)

    def score_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """[P, D] x [P, K, D] -> [P, K]: each user against its own K items."""
        if self.similarity == "cosine":
            users, items = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
        return torch.einsum("pd,pkd->pk", users, items) / self.temperature

    def predict_rating(self, scores: torch.Tensor) -> torch.Tensor:
        return self.rating_head(scores.unsqueeze(-1)).squeeze(-1)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
