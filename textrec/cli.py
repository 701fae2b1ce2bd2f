"""The `textrec` command: recommend, index, push, serve.

This module is the command-line layer: it is the only part of the package that parses arguments and prints.

    textrec recommend --model outputs/ml100k_minilm/model --items data/ml-100k/ml-100k.item --history 1 50 181
    textrec recommend --model DIR --items FILE --text "space opera with robots" --k 5
    textrec index --model DIR --items FILE --cache-dir .textrec_cache
    textrec serve --model DIR --items FILE --host 127.0.0.1 --port 8000 --api-key KEY
    textrec push --model DIR --repo-id you/textrec-ml100k
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path


def _recommender(args):
    from textrec.recommender import Recommender

    return Recommender.from_pretrained(
        args.model, args.items, cache_dir=args.cache_dir, index=args.index, revision=args.revision
    )


def _add_common(p):
    p.add_argument("--model", required=True, help="a saved model folder or a Hub repo id (owner/name)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of a repo id")
    p.add_argument("--items", required=True, help="item catalogue: RecBole .item, CSV, TSV, JSONL or Parquet")
    p.add_argument("--cache-dir", default=".textrec_cache", help="where the item index is cached")
    p.add_argument("--index", default="exact", choices=["exact", "faiss-flat", "faiss-hnsw", "faiss-ivf"])


def cmd_recommend(args) -> int:
    rec = _recommender(args)
    history = args.text if args.text is not None else args.history
    for item_id, score in rec.recommend(history, args.k, not args.include_seen):
        print(f"{item_id}\t{score:.4f}\t{rec.texts[rec.positions[item_id]]}")
    return 0


def cmd_index(args) -> int:
    started = time.perf_counter()
    rec = _recommender(args)
    print(f"item index of {len(rec)} items ready in {time.perf_counter() - started:.1f}s (cache: {args.cache_dir})")
    return 0


def cmd_serve(args) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise ValueError('serving needs the [serve] extra: pip install "textrec[serve]"') from None
    from textrec.serving import create_app

    api_key = args.api_key or os.environ.get("TEXTREC_API_KEY")
    items_log = args.items_log or str(Path(args.cache_dir) / "added_items.jsonl")
    app = create_app(
        _recommender(args), api_key=api_key, allow_anonymous_writes=args.allow_anonymous_writes, items_log=items_log
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def cmd_push(args) -> int:
    from textrec.hub import push_to_hub

    url = push_to_hub(args.model, args.repo_id, private=args.private, token=args.token)
    print(f"pushed {args.model} to {url}")
    return 0


def main(argv=None) -> int:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = argparse.ArgumentParser(
        prog="textrec", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("recommend", help="top-k items for a history")
    _add_common(p)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--history", nargs="+", help="item ids, oldest first")
    group.add_argument("--text", help="a free-text history")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--include-seen", action="store_true", help="do not exclude history items")
    p.set_defaults(func=cmd_recommend)
    p = sub.add_parser("index", help="build or refresh the cached item index")
    _add_common(p)
    p.set_defaults(func=cmd_index)
    p = sub.add_parser("serve", help="HTTP JSON API: /recommend /items /similar /healthz")
    _add_common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="key required for /items writes (or TEXTREC_API_KEY)")
    p.add_argument("--allow-anonymous-writes", action="store_true", help="accept /items without a key")
    p.add_argument("--items-log", default=None, help="added items, replayed at start (default: in --cache-dir)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("push", help="push a model folder to the Hugging Face Hub")
    p.add_argument("--model", required=True)
    p.add_argument("--repo-id", required=True)
    p.add_argument("--private", action="store_true")
    p.add_argument("--token", default=None)
    p.set_defaults(func=cmd_push)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, OSError) as e:  # bad input: a one-line message, no traceback
        print(f"textrec {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
