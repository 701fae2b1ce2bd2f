"""Validation inside `fit`: early stopping on NDCG@10 with the best weights kept, the encoder warm-up (when the
encoder joins, and its end on a plateau), the text vectors validation ranks with, and the divergence checks (a
non-finite loss stops training before its optimizer step; non-finite trained weights are never returned). A base
class of the loop."""

from __future__ import annotations

import logging
import math

import torch

from textrec.evaluate.ranking import compute_item_vectors, compute_text_vectors, evaluate
from textrec.train.checkpoints import load_trainable_state, trainable_state
from textrec.train.objectives import encoder_is_trainable

logger = logging.getLogger("textrec.train.loop")


class ValidationSteps:
    """The loop's validation and warm-up steps; `_Loop` (textrec.train.loop) provides the state they act on."""

    def say(self, message: str) -> None:
        """Log on the main process only: several processes print a validation once, not once each."""
        if self.accelerator.is_main_process:
            logger.info(message)

    # ----- where the encoder warm-up stands -----
    def join_epoch(self) -> int:
        state = self.state
        return state.encoder_joins if state.encoder_joins >= 0 else self.config.encoder_warmup_epochs

    def learning(self) -> bool:
        return encoder_is_trainable(self.model) and self.state.epoch >= self.join_epoch()

    def encoder_trained(self) -> bool:  # a whole epoch, or part of one cut short by the budget, after the join
        state = self.state
        return state.epoch > self.join_epoch() or (state.epoch == self.join_epoch() and state.step_in_epoch > 0)

    def warming_up(self) -> bool:
        """Validations up to the end of the encoder warm-up epochs do not count towards patience."""
        return encoder_is_trainable(self.model) and self.state.epoch <= self.join_epoch()

    def end_warmup_on_plateau(self, improved: bool) -> None:
        """With `encoder_warmup_patience`: end the warm-up once it stalls (or at its last epoch), restoring its best
        weights, so that the encoder joins from the converged frozen model."""
        config, state = self.config, self.state
        if not (config.encoder_warmup_patience and encoder_is_trainable(self.model) and state.encoder_joins < 0):
            return
        state.warmup_bad_evals = 0 if improved else state.warmup_bad_evals + 1
        stalled = state.warmup_bad_evals >= config.encoder_warmup_patience
        if stalled or state.epoch >= config.encoder_warmup_epochs:
            state.encoder_joins, state.bad_evals = state.epoch, 0
            if self.best is not None:
                load_trainable_state(self.model, self.best, "best warm-up weights")
            self.say(f"{self.desc}: the encoder joins after epoch {state.epoch}, from the warm-up's best weights")

    # ----- divergence -----
    window_loss = None  # the sum of the micro-batch losses since the last optimizer step

    def accumulate_loss(self, loss, sync: bool) -> bool:
        """Add a micro-batch's loss to the window since the last optimizer step; at the window's last micro-batch
        (`sync`: an optimizer step follows), check it and return True."""
        self.window_loss = loss.detach() + (0.0 if self.window_loss is None else self.window_loss)
        if sync:
            self.check_finite_loss()
        return sync

    def check_finite_loss(self) -> None:
        """Before an optimizer step: the losses since the last step (summed over the accumulated micro-batches and,
        with several processes, over every process, so that all stop together) must be finite."""
        window, self.window_loss = self.window_loss, None
        if self.accelerator.num_processes > 1:
            window = self.accelerator.reduce(window, reduction="sum")
        value = float(window)
        if not math.isfinite(value):
            config, state = self.config, self.state
            raise FloatingPointError(
                f"{self.desc}: the training loss is {value} at optimizer step {state.global_step + 1} (epoch "
                f"{state.epoch}): training diverged, and this step was not taken or saved. Try a lower learning rate "
                f"(training.lr {config.lr}, training.encoder_lr {config.encoder_lr}), gradient clipping "
                f"(training.max_grad_norm, now {config.max_grad_norm}), or bf16 instead of fp16"
            )

    def check_finite_weights(self) -> None:
        """At the end of `fit`: every trained weight must be finite (a diverged run never passes for a model)."""
        bad = [name for name, p in self.model.named_parameters() if p.requires_grad and not p.isfinite().all()]
        if bad:
            raise FloatingPointError(
                f"{self.desc}: {len(bad)} trained weights hold NaN or infinite values after "
                f"{self.state.global_step} optimizer steps (first: {bad[0]}): training diverged. Try a lower "
                f"learning rate (training.lr {self.config.lr}, training.encoder_lr {self.config.encoder_lr}) or "
                "gradient clipping (training.max_grad_norm)"
            )

    # ----- the text cache and validation -----
    def refresh_cache(self, step: int) -> None:
        state, cache = self.state, self.cache
        if state.encoder_moved or cache.vectors is None:
            cache.refresh(self.objective.catalogue_text_vectors(self.config.eval_batch_size, self.accelerator), step)
            state.encoder_moved = False
        else:  # the encoder has not moved since the last refresh: same vectors, the schedule restarts
            cache.refresh(cache.vectors, step)

    def validation_vectors(self):
        """The pooled text vectors validation ranks with: the cache while it is current, else encoded now."""
        validation, model = self.validation, self.model
        if not model.has_text:
            return None
        same_catalogue = validation.item_tokens is None or validation.item_tokens is self.objective.item_tokens
        if same_catalogue and self.cache.vectors is not None and not self.state.encoder_moved:
            return self.cache.vectors
        if not encoder_is_trainable(model) and self.validation_text:  # a frozen encoder: encoded once
            return self.validation_text[0]
        text = compute_text_vectors(model, validation.item_tokens, self.config.eval_batch_size, self.accelerator, None)
        if not encoder_is_trainable(model):
            self.validation_text.append(text)
        return text

    def validate(self):
        if self.validation is None:
            return None
        vectors = compute_item_vectors(self.model, self.validation_vectors(), self.validation.num_items)
        return evaluate(
            self.model,
            self.validation.events,
            vectors,
            mask_history=True,
            batch_size=self.config.eval_batch_size,
            history_text=self.validation.history_text,
            accelerator=self.accelerator,
        )

    def after_validation(self) -> None:
        """Record a validation, keep the best weights, decide on early stopping."""
        state, config = self.state, self.config
        metrics = self.validate()
        point = {"epoch": state.epoch, "step": state.global_step, "loss": state.last_loss}
        point["train_seconds"] = state.train_seconds
        if metrics is not None:
            point["valid_ndcg@10"] = metrics["ndcg@10"]
            self.accelerator.log({f"valid/{k}": v for k, v in metrics.items()}, step=state.global_step)
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(metrics["ndcg@10"])
            improved = metrics["ndcg@10"] > state.best
            if improved:
                state.best, state.best_step, state.bad_evals = metrics["ndcg@10"], state.global_step, 0
                self.best = trainable_state(self.model)
            elif not self.warming_up():  # patience counts once the encoder has joined (or from the start if frozen)
                state.bad_evals += 1
                if state.bad_evals >= config.patience:
                    state.done = state.done or "early"
            if self.warming_up():
                self.end_warmup_on_plateau(improved)
            self.say(
                f"{self.desc} epoch {state.epoch} step {state.global_step}: valid NDCG@10 {metrics['ndcg@10']:.4f} "
                f"(best {state.best:.4f}; {state.train_seconds:.0f}s)"
            )
        state.curve.append(point)
