"""Adversarial perturbations of embeddings (protocol E4), the attack, and adversarial training on the same tensors.

Every perturbation is relative to the norm of the vector it moves, with equal L2 budgets: FGSM
`x + eps * ||x|| / sqrt(D) * sign(g)` and the L2 form (FGM; APR) `x + eps * ||x|| * g / ||g||` both move a row `x` of
size D by exactly eps * ||x|| (a sign step moves a row less only where some of its gradient entries are exactly 0).
The control is a random direction of the same size (random signs / a Gaussian direction). `g` is the gradient of the
training loss, the softmax cross-entropy of the target over the whole catalogue, with respect to the perturbed
tensor, which is one of:

* `outputs`: the tower outputs: the item table [N, D] (every item vector, wherever it is used: as a candidate and as
  an input of the sequence user tower) and the user vectors;
* `tokens`: the token input embeddings [N, T, H] of every item's text (Miyato et al. 2017); padding never moves.

`attack_grid` (evaluation) and `AdversarialObjective` (training, loss = L(clean) + lambda * L(perturbed); Goodfellow
et al. 2015, Miyato et al. 2017, APR: He et al. SIGIR 2018) perturb the same tensors the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from textrec.data.features import ItemTokens, pad_histories
from textrec.evaluate.metrics import metrics_from_ranks
from textrec.evaluate.ranking import rank_events
from textrec.train.objectives import TrainingObjective, encoder_is_trainable

NORMS = ("sign", "l2")
ATTACKS = ("sign", "l2", "random_sign", "random_l2")
PLACES = ("outputs", "tokens")
EPS_GRID = (0.01, 0.05, 0.1, 0.5)
LOSSES = ("full", "sampled")


def relative_perturbation(x: torch.Tensor, grad: torch.Tensor, eps: float, norm: str = "sign") -> torch.Tensor:
    """The step along `grad` for the rows of `x` [..., D], of L2 size eps * ||x|| per row (see the module doc)."""
    size = eps * x.detach().norm(dim=-1, keepdim=True)
    if norm == "sign":
        return size / x.shape[-1] ** 0.5 * grad.sign()
    if norm == "l2":
        return size * grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")


def attack_delta(x: torch.Tensor, grad: torch.Tensor, eps: float, attack: str, generator=None) -> torch.Tensor:
    """`attack` in ATTACKS: the gradient step, or (`random_*`) a step of the same size in a random direction."""
    if attack not in ATTACKS:
        raise ValueError(f"attack: expected one of {ATTACKS}, got {attack!r}")
    if attack.startswith("random_"):
        grad = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)
    return relative_perturbation(x, grad, eps, attack.removeprefix("random_"))


class TokenTable:
    """The token input embeddings of every item text, held in fixed chunks of items (each padded to its own width),
    and the encoder passes over them: pooled text vectors for perturbed embeddings, and the gradient of a loss with
    respect to the embeddings given its gradient with respect to the pooled vectors (chunk by chunk, exact)."""

    def __init__(self, encoder, item_tokens: ItemTokens, chunk: int = 128, device=None):
        self.encoder = encoder
        embed = encoder.model.get_input_embeddings()
        self.chunks = []
        with torch.no_grad():
            for start in range(0, len(item_tokens), chunk):
                ids, mask = item_tokens.batch(range(start, min(len(item_tokens), start + chunk)), device)
                self.chunks.append((embed(ids).detach(), mask))

    def pooled(self, deltas: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Pooled text vectors [N, H] of the embeddings (+ `deltas`, one per chunk); differentiable into the encoder
        when it trains and grad mode is on."""
        out = []
        for k, (embeds, mask) in enumerate(self.chunks):
            moved = embeds if deltas is None else embeds + deltas[k]
            out.append(self.encoder(None, mask, inputs_embeds=moved).float())
        return torch.cat(out)

    def gradient(self, grad_pooled: torch.Tensor) -> list[torch.Tensor]:
        """d loss / d embeddings, one [c, T, H] per chunk (0 at padding), from d loss / d pooled vectors [N, H]."""
        grads, start = [], 0
        for embeds, mask in self.chunks:
            leaf = embeds.detach().requires_grad_(True)
            with torch.enable_grad():
                pooled = self.encoder(None, mask, inputs_embeds=leaf).float()
                (grad,) = torch.autograd.grad(pooled, leaf, grad_outputs=grad_pooled[start : start + len(leaf)])
            grads.append(grad * mask.unsqueeze(-1))
            start += len(leaf)
        return grads

    def deltas(self, grads: Sequence[torch.Tensor], eps: float, attack: str, generator=None) -> list[torch.Tensor]:
        """Per-token steps of `attack` (relative to each token embedding's norm), padding left in place."""
        return [
            attack_delta(embeds, grad, eps, attack, generator) * mask.unsqueeze(-1)
            for (embeds, mask), grad in zip(self.chunks, grads)
        ]


def sequence_states(model, table: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Sequence-tower states [B, L, D] of left-padded histories `inputs` [B, L] (-1 = padding) over the item table
    [N, D]: the history inputs are rows of the same table the candidates are scored against."""
    mask = inputs >= 0
    return model.user_states(table[inputs.clamp_min(0)] * mask.unsqueeze(-1), mask)


def catalogue_loss(model, users: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, reduction="mean"):
    """Softmax cross-entropy of each user's target over the whole catalogue (the item table [N, D])."""
    ids = torch.arange(len(table), device=table.device)
    return F.cross_entropy(model.score(users, table, ids).float(), targets, reduction=reduction)


def _history_inputs(model, events, device) -> tuple[torch.Tensor, torch.Tensor]:
    items, mask = pad_histories([e.history for e in events], model.max_history, device)
    return items.masked_fill(~mask, -1), torch.as_tensor([e.target for e in events], device=device)


def _ranks(model, events, table, users, batch_size: int = 256) -> torch.Tensor:
    """0-based pessimistic ranks of the targets (`rank_events`, history masked) under the users [E, D] and the item
    table [N, D]."""
    ids = torch.arange(len(table), device=table.device)

    def scores(start, end):
        return model.score(users[start:end], table, ids)

    return rank_events(scores, events, len(table), batch_size=batch_size, device=table.device)


def attack_grid(
    model,
    events,
    text: torch.Tensor | None,
    tokens: TokenTable | None = None,
    *,
    on: str = "outputs",
    eps_grid: Sequence[float] = EPS_GRID,
    attacks: Sequence[str] = ATTACKS,
    seed: int = 0,
) -> list[dict]:
    """NDCG@10 of a sequence-tower model on `events` (history masked), clean (attack "none") and under every attack
    and eps: rows {"attack", "on", "eps", "ndcg@10", "ranks"}. `text`: pooled text vectors [N, H] of the catalogue
    (None for an ID-only model); `tokens` is needed for on="tokens". The gradient is that of the summed catalogue
    loss of all `events`, taken once; each eps and attack then scales its own step. The random controls draw from a
    generator seeded with `seed`."""
    if on not in PLACES:
        raise ValueError(f"on: expected one of {PLACES}, got {on!r}")
    if on == "tokens" and tokens is None:
        raise ValueError("on='tokens' needs the TokenTable of the item texts")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    inputs, targets = _history_inputs(model, events, device)
    ids = torch.arange(model.num_items, device=device)
    with torch.enable_grad():
        text_leaf = text.detach().to(device).requires_grad_(on == "tokens") if text is not None else None
        table = model.item_vectors(ids, text_leaf)
        dv = torch.zeros_like(table, requires_grad=True)
        users = sequence_states(model, table + dv, inputs)[:, -1]
        du = torch.zeros_like(users, requires_grad=True)
        loss = catalogue_loss(model, users + du, table + dv, targets, reduction="sum")
        wrt = [text_leaf] if on == "tokens" else [dv, du]
        grads = torch.autograd.grad(loss, wrt)
    table, users = table.detach(), users.detach()
    token_grads = tokens.gradient(grads[0]) if on == "tokens" else None
    rows = [{"attack": "none", "on": on, "eps": 0.0, "ranks": _ranks(model, events, table, users)}]
    with torch.no_grad():
        for eps in eps_grid:
            for attack in attacks:
                gen = torch.Generator().manual_seed(seed)
                if on == "outputs":
                    moved = table + attack_delta(table, grads[0], eps, attack, gen)
                    moved_users = sequence_states(model, moved, inputs)[:, -1]
                    moved_users = moved_users + attack_delta(users, grads[1], eps, attack, gen)
                else:
                    moved = model.item_vectors(ids, tokens.pooled(tokens.deltas(token_grads, eps, attack, gen)))
                    moved_users = sequence_states(model, moved, inputs)[:, -1]
                ranks = _ranks(model, events, moved, moved_users)
                rows.append({"attack": attack, "on": on, "eps": eps, "ranks": ranks})
    model.train(was_training)
    for row in rows:
        row["ndcg@10"] = metrics_from_ranks(row["ranks"], (10,))["ndcg@10"]
    return rows


class AdversarialObjective(TrainingObjective):
    """loss = L(clean) + lambda * L(perturbed), both softmax cross-entropies (see `loss`), the perturbation a step
    of `norm` (sign = FGSM, l2 = FGM / APR) of relative size `eps` along the gradient of L(clean) with respect to the
    tensors `on` names (see the module doc), held constant (no gradient through it).

    Sequence user tower only. The item table [N, D] is built once per step and both the history inputs and the
    candidates are rows of it, so a perturbed item moves everywhere it is used, as in the attack. Item text comes
    from the text-vector cache, so the encoder must be frozen (or absent). lambda ramps linearly from 0 to `weight`
    over the first `ramp_steps` steps (0: no ramp). `loss`: "full" (softmax over the whole catalogue) or "sampled"
    (the in-batch softmax with logQ of `TrainingObjective`, the loss the normal model trained with, over the same
    candidates in the clean and the perturbed term). With `weight` 0 this is plain training with that loss."""

    def __init__(
        self,
        model,
        item_tokens: ItemTokens | None,
        item_freq: torch.Tensor,
        *,
        eps: float = 0.1,
        norm: str = "sign",
        weight: float = 1.0,
        on: str = "outputs",
        ramp_steps: int = 0,
        loss: str = "full",
    ):
        super().__init__(model, item_tokens, item_freq)
        if loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
        self.loss = loss
        if model.user_tower != "sequence":
            raise ValueError("AdversarialObjective: needs the sequence user tower")
        if encoder_is_trainable(model):
            raise ValueError("AdversarialObjective: item text is read from the cache; use a frozen encoder")
        if norm not in NORMS:
            raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
        if on not in PLACES or (on == "tokens" and not model.has_text):
            raise ValueError(f"on: expected one of {PLACES} ('tokens' needs item text), got {on!r}")
        self.eps, self.norm, self.weight, self.on, self.ramp_steps = eps, norm, weight, on, ramp_steps
        self.steps = 0
        self.tokens = None

    def current_weight(self) -> float:
        if self.ramp_steps <= 0:
            return self.weight
        return self.weight * min(1.0, (self.steps + 1) / self.ramp_steps)

    def forward(self, targets, inputs=None, ratings=None, cache=None, seed: int = 0, histories=None):
        model = self.model
        device = targets.device
        ids = torch.arange(model.num_items, device=device)
        valid = targets >= 0
        target_ids = targets[valid]
        scale = 1.0
        if self.gather_targets is not None:  # DDP averages processes: weight by this process's share of targets
            scale = len(target_ids) * self.gather_targets.processes / max(1, len(self.gather_targets(target_ids)))
        weight = self.current_weight() if self.training else 0.0
        text = None
        if model.has_text:
            text = cache.vectors.to(device).detach().requires_grad_(weight > 0 and self.on == "tokens")
        table = model.item_vectors(ids, text)
        dv = torch.zeros_like(table, requires_grad=weight > 0)
        users = sequence_states(model, table + dv, inputs)[valid]
        du = torch.zeros_like(users, requires_grad=weight > 0)
        loss_of = self._loss_fn(target_ids, seed)
        loss = loss_of(users + du, table + dv)
        if self.training:
            self.steps += 1
        if weight == 0:
            return loss * scale
        if self.on == "outputs":
            g_table, g_users = torch.autograd.grad(loss, [dv, du], retain_graph=True)
            moved = table + relative_perturbation(table, g_table, self.eps, self.norm).detach()
            moved_users = sequence_states(model, moved, inputs)[valid]
            moved_users = moved_users + relative_perturbation(users, g_users, self.eps, self.norm).detach()
        else:
            if self.tokens is None:
                self.tokens = TokenTable(model.item_encoder, self.item_tokens, device=device)
            (g_text,) = torch.autograd.grad(loss, [text], retain_graph=True)
            steps = self.tokens.deltas(self.tokens.gradient(g_text), self.eps, self.norm)
            with torch.no_grad():
                moved_text = self.tokens.pooled([s.detach() for s in steps])
            moved = model.item_vectors(ids, moved_text)
            moved_users = sequence_states(model, moved, inputs)[valid]
        return (loss + weight * loss_of(moved_users, moved)) * scale

    def _loss_fn(self, target_ids: torch.Tensor, seed: int):
        """loss(users, table) of this step: full-catalogue cross-entropy, or the sampled softmax over one fixed set
        of candidates (the batch's targets and `num_negatives` uniform extras, logQ-corrected)."""
        if self.loss == "full":
            return lambda users, table: catalogue_loss(self.model, users, table, target_ids)
        _, candidates, columns, offset = self.softmax_candidates(target_ids, np.random.default_rng(seed))

        def loss_of(users, table):
            logits = self.model.score(users, table[candidates], candidates, offset)
            return self.softmax(logits, columns, candidates, target_ids)

        return loss_of
