"""Per-batch training objectives (the loop that drives them is `textrec.train.loop.fit`).

Cost model on a CPU: running the language model over every history item at every step is far too slow, so
history items read *cached* pooled text vectors, refreshed every `cache_refresh_steps` optimizer steps, while the
candidate items of a batch (at most `max_live_items` of them, chosen at random) are encoded live with gradients.
The trade-off: history vectors lag the LoRA weights by up to one refresh period, and the encoder learns only from
candidate items; in exchange a step costs `max_live_items` encoder passes instead of B x L. With a frozen encoder
the cache is computed once and training is as fast as an ID model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from textrec.data.features import HistoryText, ItemTokens
from textrec.model.encode import compute_text_vectors
from textrec.model.layer_cache import LowerStateCache
from textrec.model.towers import TwoTowerModel
from textrec.train.config import LoopConfig
from textrec.train.losses import (
    InBatchSoftmaxLoss,
    RatingMSELoss,
    SampledBCELoss,
    check_logq,
    check_loss,
    log_sampling_probability,
)

# the settings of a step that `fit` sets from its LoopConfig (`TrainingObjective.configure`)
STEP_SETTINGS = ("max_live_items", "full_softmax_items", "logq", "live_catalogue")


class TextVectorCache:
    """Pooled text vectors [N, H] of every item, refreshed on a schedule; checkpointable (state_dict)."""

    def __init__(self):
        self.vectors: torch.Tensor | None = None
        self.refreshed_at: int = -1

    def due(self, step: int, every: int) -> bool:
        return self.vectors is None or (every > 0 and step - self.refreshed_at >= every)

    def refresh(self, vectors: torch.Tensor, step: int) -> None:
        self.vectors = vectors.detach()
        self.refreshed_at = step

    def state_dict(self) -> dict:
        return {"vectors": self.vectors, "refreshed_at": torch.tensor(self.refreshed_at)}

    def load_state_dict(self, state: dict) -> None:
        self.vectors = state["vectors"]
        self.refreshed_at = int(state["refreshed_at"])


def encoder_is_trainable(model: TwoTowerModel) -> bool:
    return model.has_text and any(p.requires_grad for p in model.item_encoder.parameters())


class TrainingObjective(nn.Module):
    """Wraps a `TwoTowerModel` and computes the loss of one batch in `forward`, so that DDP sees every
    parameter use through one forward call.

    loss: "softmax" (cross-entropy over candidates), "bce" (each positive against `num_negatives` uniform
    negatives), or "mse" (ratings). The softmax is exact over the whole catalogue while it has at most
    `full_softmax_items` items (every item a candidate, no correction needed); above that it is the in-batch sampled
    softmax over the batch's de-duplicated targets plus `num_negatives` uniform extra negatives, logQ-corrected
    (`logq`: each candidate's inclusion probability, the expected count of Yi et al. 2019, or none). Either way,
    at most `max_live_items` of the batch's *target* items are encoded live (with gradient into the encoder); every
    other item vector comes from the text cache. `fit` sets `max_live_items`, `logq`, `full_softmax_items` and
    `live_catalogue` from its `LoopConfig` (`configure`).
    """

    def __init__(
        self,
        model: TwoTowerModel,
        item_tokens: ItemTokens | None,
        item_freq: torch.Tensor,
        loss: str = "softmax",
        num_negatives: int = 0,
        history_text: HistoryText | None = None,
    ):
        super().__init__()
        check_loss(loss, num_negatives)
        self.model = model
        self.item_tokens = item_tokens
        self.register_buffer("item_freq", item_freq.float() / item_freq.sum().clamp_min(1), persistent=False)
        self.loss_name = loss
        self.softmax = InBatchSoftmaxLoss()
        self.bce = SampledBCELoss()
        self.mse = RatingMSELoss()
        self.num_negatives = num_negatives
        self.history_text = history_text
        self._dropped = None  # per forward: the items that step treats as new (`model.id_dropout`)
        self._catalogue_text = None  # per forward: that step's live text vectors of every item
        self._catalogue_tokens = None  # the padded catalogue on the device, made once
        self.lower_states = None  # with `model.lora_top_layers`: the frozen bottom layers' output, made once
        self.configure()
        # Set by the loop under several processes: target ids of all processes, so every process ranks its targets
        # against the same in-batch candidates as one process with the whole batch would.
        self.gather_targets = None

    def configure(self, **settings) -> TrainingObjective:
        """The step's settings, named and defaulted as in `LoopConfig` (`max_live_items`, `full_softmax_items`,
        `logq`, `live_catalogue`): `fit` sets them from its config at every epoch start (what is live depends on
        whether the encoder trains yet), so they have one source. Called by hand only when the objective is used
        outside `fit`. Returns the objective."""
        unknown = sorted(set(settings) - set(STEP_SETTINGS))
        if unknown:
            raise TypeError(f"configure: unknown settings {unknown} (known: {STEP_SETTINGS})")
        defaults = LoopConfig()
        values = {name: settings.get(name, getattr(defaults, name)) for name in STEP_SETTINGS}
        check_logq(values["logq"])
        self.max_live_items, self.logq = values["max_live_items"], values["logq"]
        # every step encodes the whole catalogue live, with gradient, and history and candidates read it
        self.live_catalogue = values["live_catalogue"]
        # the softmax loss is exact over the whole catalogue while it has at most `full_softmax_items` items
        self.full_softmax = self.loss_name == "softmax" and 0 < self.model.num_items <= values["full_softmax_items"]
        return self

    # ----- item vectors for a set of item indices -----
    def id_view(self, ids: torch.Tensor) -> torch.Tensor:
        """`ids` as the id part and the bias see them: -1 (no id, no bias) for the items this step treats as new
        (`model.id_dropout`)."""
        dropped = self._dropped
        return ids if dropped is None else ids.masked_fill(dropped.to(ids.device)[ids.clamp_min(0)], -1)

    def text_vectors(
        self, ids: torch.Tensor, cache: TextVectorCache | None, rng: np.random.Generator | None, live_pool=None
    ) -> torch.Tensor:
        """Pooled text vectors of items `ids`: cached, with up to `max_live_items` of them (drawn from `live_pool`,
        by default from `ids`) encoded live; with `live_catalogue`, this step's live vectors of every item."""
        model = self.model
        if self._catalogue_text is not None:
            return self._catalogue_text[ids]
        text = cache.vectors.to(ids.device)[ids].clone()
        if self.training and rng is not None and self.max_live_items > 0 and encoder_is_trainable(model):
            unique = torch.unique(ids)
            pool = unique if live_pool is None else torch.unique(live_pool)
            take = min(self.max_live_items, len(pool))
            live_items = pool[torch.as_tensor(rng.choice(len(pool), size=take, replace=False))]
            live = self.live_text_vectors(live_items)
            position = torch.searchsorted(unique, ids)
            slot = torch.full((len(unique),), -1, dtype=torch.long, device=ids.device)
            slot[torch.searchsorted(unique, live_items)] = torch.arange(take, device=ids.device)
            use_live = slot[position] >= 0
            text = text.to(live.dtype)
            text[use_live] = live[slot[position][use_live]]
        return text

    def live_text_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """Pooled text vectors of catalogue rows `items`, encoded now (with gradient while training): through the
        top layers from the cached lower states when the encoder trains only its top layers
        (`model.lora_top_layers`), else through the whole encoder."""
        encoder = self.model.item_encoder
        if encoder.cached_top_layers:
            if self.lower_states is None:
                self.lower_states = LowerStateCache(encoder, self.item_tokens, device=items.device)
            return self.lower_states.encode(encoder, items)
        input_ids, mask = self.item_tokens.batch(items.tolist(), device=items.device)
        return self.model.item_text_vectors(input_ids, mask)

    @torch.no_grad()
    def catalogue_text_vectors(self, batch_size: int, accelerator=None) -> torch.Tensor:
        """Every catalogue item's pooled text vector under the encoder as it is now, in eval mode (the cache the
        loop refreshes): from the cached lower states when there are any (the top layers only), else a full
        encode (`compute_text_vectors`)."""
        encoder = self.model.item_encoder
        if not (encoder.cached_top_layers and self.lower_states is not None):
            return compute_text_vectors(self.model, self.item_tokens, batch_size, accelerator, None)
        was_training = encoder.training
        encoder.eval()
        device = self.lower_states.states.device
        try:
            parts = [
                self.lower_states.encode(encoder, torch.arange(i, min(i + batch_size, len(self.item_tokens))))
                for i in range(0, len(self.item_tokens), batch_size)
            ]  # fmt: skip
        finally:
            encoder.train(was_training)
        return torch.cat(parts).to(device)

    def item_vectors(
        self, ids: torch.Tensor, cache: TextVectorCache | None, rng: np.random.Generator | None, live_pool=None
    ):
        """Vectors of items `ids`: text (see `text_vectors`) and/or id part, with this step's id dropout."""
        model = self.model
        text = self.text_vectors(ids, cache, rng, live_pool) if model.has_text else None
        return model.item_vectors(self.id_view(ids), text)

    # ----- the batch loss -----
    def forward(
        self,
        targets: torch.Tensor,
        inputs: torch.Tensor | None = None,
        ratings: torch.Tensor | None = None,
        cache: TextVectorCache | None = None,
        seed: int = 0,
        histories=None,
    ) -> torch.Tensor:
        """inputs/targets [B, L]: left-padded windows (target -1 = no target at that position). For the text
        user tower, `histories` (one list of item indices per row) replaces `inputs` and targets is [B, 1]."""
        rng = np.random.default_rng(seed)
        model = self.model
        self._dropped = None
        self._catalogue_text = self._live_catalogue_text(targets.device)
        if self.training and model.id_dropout > 0:  # the same items lose their id in history and as candidates
            drop = rng.random(model.num_items) < model.id_dropout
            self._dropped = torch.as_tensor(drop, device=targets.device)
        valid = targets >= 0
        target_ids = targets[valid]
        if model.user_tower == "sequence":
            mask = inputs >= 0
            history = self.item_vectors(inputs.clamp_min(0), cache, None)
            users = model.user_states(history * mask.unsqueeze(-1), mask)[valid]
        else:
            input_ids, attn = self.history_text.tokenize(histories, device=targets.device)
            users = model.encode_users_text(input_ids, attn)
        if self.loss_name == "softmax":
            return self._softmax(users, target_ids, cache, rng)
        if self.loss_name == "bce":
            return self._bce(users, target_ids, cache, rng)
        positives = self.item_vectors(target_ids, cache, rng)
        scores = model.score_pairs(users, positives.unsqueeze(1))[:, 0]
        return self.mse(model.predict_rating(scores), ratings[valid])

    def _live_catalogue_text(self, device) -> torch.Tensor | None:
        """With `live_catalogue` while training a trainable encoder: the pooled text vectors of every item, encoded
        in one pass with gradient (one encoder pass over the catalogue per step); else None."""
        if not (self.live_catalogue and self.training and encoder_is_trainable(self.model)):
            return None
        if self.model.item_encoder.cached_top_layers:  # the top layers only, from the cached lower states
            return self.live_text_vectors(torch.arange(len(self.item_tokens), device=device))
        if self._catalogue_tokens is None or self._catalogue_tokens[0].device != torch.device(device):
            self._catalogue_tokens = self.item_tokens.batch(range(len(self.item_tokens)), device=device)
        return self.model.item_text_vectors(*self._catalogue_tokens)

    def _uniform(self, count: int, rng: np.random.Generator, device) -> torch.Tensor:
        return torch.as_tensor(rng.integers(0, self.model.num_items, size=count), device=device)

    def softmax_candidates(self, target_ids: torch.Tensor, rng: np.random.Generator | None, full: bool = False):
        """(batch targets, candidates, each target's column, the candidates' -log q offset or None) of one step:
        the whole catalogue with `full`, else the batch's distinct targets (of every process) and `num_negatives`
        uniform extras, logQ-corrected. The offset enters `TwoTowerModel.score`, inside the matrix product."""
        batch_targets = self.gather_targets(target_ids) if self.gather_targets is not None else target_ids
        offset = None
        if full:
            candidates = torch.arange(self.model.num_items, device=target_ids.device)
        else:
            extra = self._uniform(self.num_negatives, rng, target_ids.device)
            candidates = torch.unique(torch.cat([batch_targets, extra]))
            if self.logq != "none":
                offset = -log_sampling_probability(
                    candidates, self.item_freq, len(batch_targets), self.num_negatives, self.logq
                )
        return batch_targets, candidates, torch.searchsorted(candidates, target_ids), offset

    def _softmax(self, users, target_ids, cache, rng):
        batch_targets, candidates, columns, offset = self.softmax_candidates(target_ids, rng, self.full_softmax)
        text = self.text_vectors(candidates, cache, rng, batch_targets) if self.model.has_text else None
        seen_ids = self.id_view(candidates)
        items = self.model.item_vectors(seen_ids, text)

        def loss_of(u, v, ids=seen_ids):
            return self.softmax(self.model.score(u, v, ids, offset), columns, candidates, target_ids)

        loss = loss_of(users, items)
        if self.training and self.model.text_loss_weight > 0:  # the targets ranked by text alone (no id, no bias)
            no_ids = torch.full_like(candidates, -1)
            loss = loss + self.model.text_loss_weight * loss_of(users, self.model.item_vectors(no_ids, text), no_ids)
        if self.gather_targets is not None:
            # DDP averages the processes' gradients: weight this process's mean by its share of the global batch,
            # so the average is the mean over every target of the global batch, as with one process.
            loss = loss * (len(target_ids) * self.gather_targets.processes / max(1, len(batch_targets)))
        return loss

    def _bce(self, users, target_ids, cache, rng):
        negatives = self._uniform(len(target_ids) * self.num_negatives, rng, target_ids.device)
        negatives = negatives.view(len(target_ids), self.num_negatives)
        candidates, columns = torch.unique(torch.cat([target_ids, negatives.flatten()]), return_inverse=True)
        vectors = self.item_vectors(candidates, cache, rng)
        pos = self.model.score_pairs(users, vectors[columns[: len(target_ids)]].unsqueeze(1))[:, 0]
        neg_vectors = vectors[columns[len(target_ids) :]].view(len(target_ids), self.num_negatives, -1)
        neg = self.model.score_pairs(users, neg_vectors)
        return self.bce(pos, neg, negatives != target_ids[:, None])
