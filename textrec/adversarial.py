"""Adversarial perturbations of embeddings (protocol E4): FGSM and its L2 form, usable on any textrec model.

FGSM (Goodfellow et al. 2015): delta = eps * sign(grad). L2 / FGM (Miyato et al. 2017; APR, He et al. SIGIR 2018):
delta = eps * grad / ||grad||_2, per row. The gradient is that of the training loss with respect to the perturbed
tensor: the token input embeddings of item text, or the user / item tower output vectors. The control is random
noise of the same norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NORMS = ("sign", "l2")


def perturbation(grad: torch.Tensor, eps: float, norm: str = "sign") -> torch.Tensor:
    """The loss-increasing step of size `eps`: `sign` (L-infinity, FGSM) or `l2` (per row, last dimension)."""
    if norm == "sign":
        return eps * grad.sign()
    if norm == "l2":
        return eps * grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")


def random_perturbation(like: torch.Tensor, eps: float, norm: str = "sign", generator=None) -> torch.Tensor:
    """The control: random noise with the same norm as `perturbation` would have."""
    noise = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    return perturbation(noise, eps, norm)


def ranking_loss(model, users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Full softmax cross-entropy of each user's target over the catalogue (the loss the attack climbs)."""
    catalogue = torch.arange(len(items), device=items.device)
    return F.cross_entropy(model.score(users, items, catalogue).float(), targets)


def attack_vectors(
    model,
    users: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    eps: float,
    norm: str = "sign",
    where: str = "both",
    random: bool = False,
    generator=None,
):
    """Perturb tower outputs: users [B, D] and/or items [N, D] -> (users', items'). `eps` is absolute (scale it by
    the mean vector norm for the relative grid of E4). `random=True` gives the same-norm noise control."""
    if where not in ("users", "items", "both"):
        raise ValueError(f"where: expected users, items or both, got {where!r}")
    users = users.detach().requires_grad_(where in ("users", "both"))
    items = items.detach().requires_grad_(where in ("items", "both"))
    if random:
        du = random_perturbation(users, eps, norm, generator) if users.requires_grad else 0
        di = random_perturbation(items, eps, norm, generator) if items.requires_grad else 0
        return (users + du).detach(), (items + di).detach()
    with torch.enable_grad():
        loss = ranking_loss(model, users, items, targets)
        wrt = [t for t in (users, items) if t.requires_grad]
        grads = torch.autograd.grad(loss, wrt)
    grads = dict(zip([id(t) for t in wrt], grads))
    new_users = users + perturbation(grads[id(users)], eps, norm) if users.requires_grad else users
    new_items = items + perturbation(grads[id(items)], eps, norm) if items.requires_grad else items
    return new_users.detach(), new_items.detach()


def token_embedding_delta(
    encoder,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_fn,
    eps: float,
    norm: str = "sign",
    random: bool = False,
    generator=None,
) -> torch.Tensor:
    """Perturbation [B, T, H] of the token input embeddings of texts, from the gradient of `loss_fn(pooled)`
    (pooled = the encoder's output for the perturbed embeddings). Padding positions are never perturbed."""
    embeds = encoder.model.get_input_embeddings()(input_ids).detach()
    mask = attention_mask.unsqueeze(-1).to(embeds.dtype)
    if random:
        return random_perturbation(embeds, eps, norm, generator) * mask
    embeds.requires_grad_(True)
    with torch.enable_grad():
        pooled = encoder(None, attention_mask, inputs_embeds=embeds)
        (grad,) = torch.autograd.grad(loss_fn(pooled), embeds)
    return perturbation(grad, eps, norm) * mask
