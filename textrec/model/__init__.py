"""The model: text encoders (any `transformers` AutoModel, pooled, optionally with LoRA), the two towers and their
scoring, building them from a `ModelConfig`, and the model folder (save, load, push, model card)."""
