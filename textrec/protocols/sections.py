"""The config sections of the shipped recipes, as the library's own dataclasses (`RECIPE_SECTIONS`).

Every recipe has a `training` section, the library's `LoopConfig` (the train recipe's `TrainingConfig` adds its
output folder, loss and E1-cold): batch size, learning rates, patience, precision and the rest are declared once,
with one default, and a recipe's own section holds only what the loop does not know. What a recipe's `training`
section governs:

- train: its one fit;
- incremental_lora: the base fit and every full retrain (an update takes `update_epochs`, `update_warmup_epochs`
  and `update_lr` from the `incremental` section, everything else from `training`);
- domain_transfer: every target fit, every method (the source fit takes `source_epochs` and
  `source_warmup_epochs`);
- adversarial_fgsm: the normal model (the warm-started adversarial training takes `adv_epochs` and `adv_lr`), once
  per seed of `adversarial.seeds`.

A dataclass checks its own fields; what a recipe needs across its sections (e.g. of the model, for its protocol) is
in `CROSS_CHECKS`, which `textrec.serve.launch.parse_recipe_args` runs on the loaded sections, so a bad combination
is reported as one line naming the fields, like any other config error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from textrec.config import DataConfig, ModelConfig
from textrec.protocols.adversarial import EPS_GRID, LOSSES, NORMS, PLACES
from textrec.train.config import LoopConfig, TrainingConfig

STRATEGIES = ("frozen", "finetune", "replay", "full_retrain", "continue_all", "window")
METHODS = ("zero_shot", "adapted", "scratch", "id_only")
SOURCE_GENRES = (
    "Action", "Adventure", "Sci-Fi", "Thriller", "War", "Crime", "Western", "Horror", "Mystery", "Film-Noir",
)  # fmt: skip


def _help(text: str, default=None, **kw):
    if "default_factory" in kw:
        return field(metadata={"help": text}, **kw)
    return field(default=default, metadata={"help": text})


def _check_choices(section: str, name: str, values, allowed) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{section}.{name}: unknown value {unknown[0]!r} (known: {tuple(allowed)})")


@dataclass
class HubConfig:
    """Opt-in upload of the finished model folder to the Hugging Face Hub."""

    push_to_hub: bool = _help("push <output_dir>/model when the run ends", False)
    repo_id: str | None = _help("e.g. you/textrec-ml100k", None)
    private: bool = _help("create the repo as private", False)

    def __post_init__(self):
        if self.push_to_hub and not self.repo_id:
            raise ValueError("hub.repo_id: required when hub.push_to_hub is true")


@dataclass
class IncrementalConfig:
    """The E2 stream, the strategies and the updates. The `training` section is the base fit's and every full
    retrain's; an update takes `update_epochs`, `update_warmup_epochs` and `update_lr` from here and everything else
    (patience, batch, LoRA learning rate, precision, ...) from `training`."""

    output_dir: str = _help("reports and versioned adapters", "outputs/incremental")
    base_fraction: float = _help("share of the stream in the base period", 0.5)
    num_slices: int = _help("T: slices after the base period", 5)
    test_fraction: float = _help("held-out test share of every period", 0.1)
    valid_fraction: float = _help("held-out validation share of every period", 0.1)
    eval_cap: int = _help("evaluation events per period (seeded sample)", 2000)
    strategies: list = _help(f"any of {STRATEGIES}", default_factory=lambda: list(STRATEGIES))
    window: int = _help("window strategy: the last W periods", 2)
    reservoir_size: int = _help("replay: past interactions kept (reservoir)", 4000)
    update_epochs: int = _help("maximum epochs of each incremental update", 2)
    update_warmup_epochs: int = _help("of those, on frozen text vectors first", 0)
    update_lr: float = _help("heads and tower during updates (training.lr: the base fit's)", 5e-4)
    lora_epochs_on: str = _help(
        "targets of an update's LoRA epochs: all (slice + replay / window) | new (the slice only)", "all"
    )

    def __post_init__(self):
        _check_choices("incremental", "strategies", self.strategies, STRATEGIES)
        if self.lora_epochs_on not in ("all", "new"):
            raise ValueError(f"incremental.lora_epochs_on: expected all or new, got {self.lora_epochs_on!r}")
        if not 0 <= self.update_warmup_epochs <= self.update_epochs:
            raise ValueError("incremental.update_warmup_epochs: must be between 0 and update_epochs")
        if not 0 < self.base_fraction < 1 or self.num_slices < 1:
            raise ValueError("incremental.base_fraction: must be in (0, 1); incremental.num_slices: must be >= 1")


@dataclass
class TransferConfig:
    """The domain split, the target fractions and the source fit. Every target fit, of every method, follows the
    `training` section; the ID-only method gets `training.encoder_warmup_epochs` as extra patience, so that no
    method can stop before a text model's frozen warm-up has ended. The source fit takes `source_epochs` and
    `source_warmup_epochs` from here."""

    output_dir: str = _help("reports and adapters", "outputs/transfer")
    dataset: str = _help("name in the report rows (default: the data folder's name)", "")
    split_seed: int = _help("seed of the cold items and of the target user fractions", 0)
    domain_field: str = _help("item field whose words decide the domain", "class")
    source_values: list = _help(
        "items whose field has any of these words are source items", default_factory=lambda: list(SOURCE_GENRES)
    )
    cold_item_fraction: float = _help("target items held out of training (E1-cold)", 0.1)
    fractions: list = _help("target user shares", default_factory=lambda: [0.05, 0.2, 1.0])
    source_epochs: int = _help("maximum epochs on the source domain", 20)
    source_warmup_epochs: int = _help("of those, on frozen text vectors first", 15)
    methods: list = _help(f"which of {METHODS} to run (references are free)", default_factory=lambda: list(METHODS))

    def __post_init__(self):
        _check_choices("transfer", "methods", self.methods, METHODS)
        if not 0 <= self.source_warmup_epochs <= self.source_epochs:
            raise ValueError("transfer.source_warmup_epochs: must be between 0 and transfer.source_epochs")
        if not self.fractions or not all(0 < f <= 1 for f in self.fractions):
            raise ValueError(f"transfer.fractions: shares in (0, 1], got {self.fractions}")


@dataclass
class AdversarialConfig:
    """The seeds, the warm-started adversarial training, its validation grid, and the attacks. The normal model
    trains as the `training` section says, once per seed of `seeds` (which replaces `training.seed`); the
    warm-started adversarial training continues it for `adv_epochs` at `adv_lr`, with no time budget, no warm-up
    and no early stopping (every setting of the grid gets the same epochs)."""

    output_dir: str = _help("report and models", "outputs/fgsm")
    seeds: list = _help("the grid runs on the first seed (each replaces training.seed)", default_factory=lambda: [0])
    normal_from: list = _help(
        "per seed, a saved model folder of the same model config on this E1 split (e.g. a train recipe's "
        "<output_dir>/model) used as the normal model instead of training one",
        default_factory=list,
    )
    adv_epochs: int = _help("warm-started training: fixed epochs (no early stop)", 5)
    adv_lr: float = _help("warm-started training: learning rate", 5e-4)
    ramp_epochs: float = _help("lambda ramps from 0 over these epochs (0: off)", 1.0)
    train_on: str = _help("what training perturbs: outputs | tokens", "outputs")
    train_norm: str = _help("sign (FGSM) | l2 (FGM / APR)", "sign")
    adv_loss: str = _help("sampled (the normal model's in-batch softmax) | full (whole catalogue)", "sampled")
    weights: list = _help("lambda grid", default_factory=lambda: [0.5, 1.0])
    train_eps_grid: list = _help("training eps grid", default_factory=lambda: [0.05, 0.1])
    control: bool = _help("also continue the normal model with lambda 0", True)
    select_eps: float = _help("the validation attack (FGSM on train_on) eps", 0.1)
    clean_tolerance: float = _help("allowed relative validation clean loss", 0.03)
    attack_on: list = _help("outputs and/or tokens", default_factory=lambda: list(PLACES))
    token_attack_seeds: int = _help("how many seeds (first ones) get token attacks", 1)
    eps_grid: list = _help("relative attack sizes", default_factory=lambda: list(EPS_GRID))

    def __post_init__(self):
        for name, allowed in (("train_norm", NORMS), ("adv_loss", LOSSES), ("train_on", PLACES)):
            _check_choices("adversarial", name, [getattr(self, name)], allowed)
        _check_choices("adversarial", "attack_on", self.attack_on, PLACES)
        if not self.attack_on or not self.seeds or not self.weights or not self.train_eps_grid:
            raise ValueError("adversarial.attack_on, seeds, weights and train_eps_grid: each needs at least one value")
        if self.normal_from and len(self.normal_from) != len(self.seeds):
            raise ValueError(
                f"adversarial.normal_from: one folder per seed ({len(self.seeds)}), got {len(self.normal_from)}"
            )


RECIPE_SECTIONS: dict[str, dict[str, type]] = {
    "train": {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig, "hub": HubConfig},
    "incremental_lora": {
        "data": DataConfig,
        "model": ModelConfig,
        "training": LoopConfig,
        "incremental": IncrementalConfig,
    },
    "domain_transfer": {"data": DataConfig, "model": ModelConfig, "training": LoopConfig, "transfer": TransferConfig},
    "adversarial_fgsm": {
        "data": DataConfig,
        "model": ModelConfig,
        "training": LoopConfig,
        "adversarial": AdversarialConfig,
    },
}


def check_adversarial_fgsm(cfg: dict) -> None:
    """adversarial_fgsm: the attacks perturb the sequence user tower's inputs and cached (frozen) item text."""
    model, adv = cfg["model"], cfg["adversarial"]
    if model.user_tower != "sequence":
        raise ValueError("model.user_tower: this recipe attacks the sequence user tower; set it to 'sequence'")
    if model.encoder is not None and model.train_mode != "frozen":
        raise ValueError("model.train_mode: adversarial training reads cached item text; set it to 'frozen'")
    if "tokens" in adv.attack_on + [adv.train_on] and model.encoder is None:
        raise ValueError("adversarial.attack_on / adversarial.train_on: 'tokens' needs a text encoder (model.encoder)")


def check_domain_transfer(cfg: dict) -> None:
    """domain_transfer: the source model ranks the target catalogue by text alone."""
    model = cfg["model"]
    if model.id_embedding or model.item_bias or model.encoder is None:
        raise ValueError(
            "model.encoder / model.id_embedding / model.item_bias: transfer needs a text-only item tower (encoder "
            "set, id_embedding and item_bias false); the ID-only baseline is built by the recipe itself"
        )


# recipe -> a check of its loaded sections (section name -> instance) that raises ValueError naming the fields
CROSS_CHECKS: dict[str, Callable[[dict], None]] = {
    "domain_transfer": check_domain_transfer,
    "adversarial_fgsm": check_adversarial_fgsm,
}
