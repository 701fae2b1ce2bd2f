"""The `textrec` command: recommend, index, serve, push, export, and run the shipped recipes.

This module is the command-line layer: it is the only part of the package that parses arguments and prints.

    textrec recommend --model outputs/ml100k_minilm/model --items data/ml-100k/ml-100k.item --history 1 50 181
    textrec recommend --model DIR --items FILE --text "space opera with robots" --k 5
    textrec recommend --model DIR --items FILE --input histories.jsonl --output recs.jsonl
    textrec index --model DIR --items FILE --cache-dir .textrec_cache
    textrec serve --model DIR --items FILE --host 127.0.0.1 --port 8000 --api-key KEY
    textrec push --model DIR --repo-id you/textrec-ml100k
    textrec export --format sentence-transformers --model DIR --output DIR
    textrec configs                                   # the shipped recipes and their configs
    textrec configs cp ml100k_minilm my_config.yaml   # a copy to edit
    textrec run train --config ml100k_minilm training.epochs=3
    textrec run --num_processes 2 train --config my_config.yaml   # through accelerate launch
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

RUN_USAGE = """usage: textrec run [ACCELERATE LAUNCH OPTIONS] RECIPE --config NAME_OR_FILE [section.field=value ...]

Runs a recipe (one shipped with textrec - see `textrec configs` - or a recipe .py file). --config takes a file or
the name of a shipped config. Without launcher options the recipe runs in this process, as
`python recipes/<recipe>.py` would (one process: CPU or one GPU). Options before RECIPE go to `accelerate launch`,
which then starts the recipe, e.g. `textrec run --multi_gpu --num_processes 2 train --config ml100k_minilm`.
`textrec run RECIPE --help` lists every config field with its type, default and help.
"""


def _recommender(args):
    from textrec.serve.recommender import Recommender

    return Recommender.from_pretrained(
        args.model, args.items, cache_dir=args.cache_dir, index=args.index, revision=args.revision, device=args.device
    )


def _add_common(p):
    p.add_argument("--model", required=True, help="a saved model folder or a Hub repo id (owner/name)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of a repo id")
    p.add_argument("--items", required=True, help="item catalogue: RecBole .item, CSV, TSV, JSONL or Parquet")
    p.add_argument("--cache-dir", default=".textrec_cache", help="where the item index is cached")
    p.add_argument("--index", default="exact", choices=["exact", "faiss-flat", "faiss-hnsw", "faiss-ivf"])
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N | mps (default: cuda when available)")


def cmd_recommend(args) -> int:
    if (args.input is None) != (args.output is None):
        raise ValueError("--input and --output go together (a JSON-lines file of requests, and of answers)")
    if args.input is not None:
        return _recommend_file(args)
    rec = _recommender(args)
    history = args.text if args.text is not None else args.history
    for item_id, score in rec.recommend(history, args.k, not args.include_seen):
        print(f"{item_id}\t{score:.4f}\t{rec.texts[rec.positions[item_id]]}")
    return 0


def _recommend_file(args) -> int:
    from textrec.files import atomic_write_text
    from textrec.serve.batch import read_requests, recommend_requests

    requests = read_requests(args.input)  # a malformed file fails before the model is loaded
    rec = _recommender(args)
    answers = recommend_requests(rec, requests, args.k, exclude_seen=not args.include_seen, batch_size=args.batch_size)
    atomic_write_text(args.output, "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers))
    print(f"{len(answers)} recommendation lists written to {args.output}")
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
    from textrec.serve.app import create_app

    api_key = args.api_key or os.environ.get("TEXTREC_API_KEY")
    items_log = args.items_log or str(Path(args.cache_dir) / "added_items.jsonl")
    app = create_app(
        _recommender(args), api_key=api_key, allow_anonymous_writes=args.allow_anonymous_writes, items_log=items_log
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def cmd_push(args) -> int:
    from textrec.model.hub import push_to_hub

    url = push_to_hub(args.model, args.repo_id, private=args.private, token=args.token)
    print(f"pushed {args.model} to {url}")
    return 0


def cmd_export(args) -> int:
    from textrec.serve.export import export_sentence_transformers

    out = export_sentence_transformers(args.model, args.output, revision=args.revision, token=args.token)
    print(f"exported {args.model} as a {args.format} model to {out}")
    return 0


def cmd_configs(args) -> int:
    from textrec.serve.launch import copy_shipped, recipe_names, recipes_dir, shipped_configs

    if args.configs_command == "cp":
        print(f"copied {args.name} to {copy_shipped(args.name, args.dest)}")
        return 0
    configs = shipped_configs()
    print(f"{'RECIPE':<20}CONFIG")
    for recipe in recipe_names():
        names = [c.name for c in configs if c.recipe == recipe]
        for n, name in enumerate(names or ["-"]):
            print(f"{recipe if n == 0 else '':<20}{name}")
    print(f"\nfrom {recipes_dir()}; run one with: textrec run <recipe> --config <config> [section.field=value ...]")
    return 0


def cmd_run(args) -> int:
    from textrec.serve.launch import accelerate_command, recipe_argv, resolve_recipe, run_in_process, split_run_args

    if not args.run_args or args.run_args[0] in ("-h", "--help"):
        print(RUN_USAGE, file=sys.stdout if args.run_args else sys.stderr)
        return 0 if args.run_args else 2
    launcher, name, rest = split_run_args(args.run_args)
    recipe = resolve_recipe(name)
    wants_help = "-h" in rest or "--help" in rest
    rest = rest if wants_help else recipe_argv(rest)
    if launcher and not wants_help:
        return subprocess.call(accelerate_command(launcher, recipe, rest))
    run_in_process(recipe, rest)
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
    group.add_argument(
        "--input", help='JSON lines, one request a line: {"history": [ids]} or {"text": ...}, optional user_id, id, k'
    )
    p.add_argument("--output", help="with --input: the answers as JSON lines, in input order (written atomically)")
    p.add_argument("--batch-size", type=int, default=64, help="with --input: requests per recommend_batch call")
    p.add_argument("--k", type=int, default=10, help="items per answer (a request's own k wins)")
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
    p = sub.add_parser("export", help="export a model's item tower for another library")
    p.add_argument("--format", required=True, choices=["sentence-transformers"])
    p.add_argument("--model", required=True, help="a saved model folder or a Hub repo id (owner/name)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of a repo id")
    p.add_argument("--token", default=None, help="Hub token for a private repo")
    p.add_argument("--output", required=True, help="the folder to write (replaced atomically)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("configs", help="list the shipped recipes and configs; `textrec configs cp NAME DEST` copies")
    cp = p.add_subparsers(dest="configs_command").add_parser("cp", help="copy a shipped config or recipe to edit it")
    cp.add_argument("name", help="a config name (e.g. ml100k_minilm) or a recipe name (e.g. train)")
    cp.add_argument("dest", help="the file to write, or an existing folder (never overwrites)")
    p.set_defaults(func=cmd_configs)
    sub.add_parser("run", help="run a recipe: textrec run [launcher options] RECIPE --config NAME [overrides]")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["run"]:  # everything after `run` belongs to accelerate launch or the recipe
        args = argparse.Namespace(command="run", func=cmd_run, run_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, OSError, ImportError) as e:  # bad input or a missing extra: one line, no traceback
        print(f"textrec {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
