"""textrec: fine-tune pretrained text encoders into two-tower recommenders."""

import torch.distributed

if torch.distributed.is_available():
    # Imported before any process group exists, on purpose. torch.distributed.nn.functional binds
    # `group=group.WORLD` as default arguments when it is imported; transformers imports it lazily when a model is
    # first built, after Accelerator() has made the gloo group, so those defaults kept the group and its gloo threads
    # alive past destroy_process_group(). A gloo thread still releasing its last job then raced interpreter shutdown
    # and aborted with "terminate called without an active exception" (about 1 run in 40 of two-process tests; 12 of
    # 34 in a torch-only reproduction). Imported first, the defaults hold the placeholder instead.
    import torch.distributed.nn  # noqa: F401

from textrec.config import DataConfig, ModelConfig, load_config
from textrec.data import DataError, RecData, load_data, load_grouplens_100k, load_recbole, load_tabular
from textrec.data.features import all_targets
from textrec.data.splits import EvalEvent, LeaveOneOutSplit, leave_one_out, time_cut
from textrec.data.synthetic import TOPIC_WORDS, make_synthetic
from textrec.data.text import ItemTemplate
from textrec.evaluate.metrics import metrics_from_ranks, target_ranks
from textrec.evaluate.ranking import (
    compute_item_vectors,
    compute_text_vectors,
    evaluate,
    evaluate_content_similarity,
    evaluate_scores,
    popularity_scores,
)
from textrec.evaluate.results import load_benchmarks
from textrec.model.encoders import TextEncoder, resolve_encoder
from textrec.model.hub import load_pretrained, push_to_hub, save_pretrained
from textrec.model.textrec_model import TextRecModel
from textrec.model.towers import SequenceTower, TwoTowerModel
from textrec.protocols.stream import make_stream
from textrec.serve.recommender import Recommender, UnknownItemsError
from textrec.train.incremental import AdapterRegistry, update_adapter
from textrec.train.loop import FitResult, LoopConfig, Validation, WindowExamples, fit, make_accelerator
from textrec.train.losses import InBatchSoftmaxLoss, RatingMSELoss, SampledBCELoss
from textrec.train.objectives import TrainingObjective

__version__ = "0.1.0"

__all__ = [
    "TOPIC_WORDS",
    "all_targets",
    "compute_item_vectors",
    "compute_text_vectors",
    "evaluate",
    "evaluate_content_similarity",
    "evaluate_scores",
    "fit",
    "leave_one_out",
    "load_benchmarks",
    "load_config",
    "load_data",
    "load_grouplens_100k",
    "load_pretrained",
    "load_recbole",
    "load_tabular",
    "make_accelerator",
    "make_stream",
    "make_synthetic",
    "metrics_from_ranks",
    "popularity_scores",
    "push_to_hub",
    "resolve_encoder",
    "save_pretrained",
    "target_ranks",
    "time_cut",
    "update_adapter",
    "AdapterRegistry",
    "DataConfig",
    "DataError",
    "EvalEvent",
    "FitResult",
    "InBatchSoftmaxLoss",
    "ItemTemplate",
    "LeaveOneOutSplit",
    "LoopConfig",
    "ModelConfig",
    "RatingMSELoss",
    "RecData",
    "Recommender",
    "SampledBCELoss",
    "SequenceTower",
    "TextEncoder",
    "TextRecModel",
    "TrainingObjective",
    "TwoTowerModel",
    "UnknownItemsError",
    "Validation",
    "WindowExamples",
]
