#!/usr/bin/env bash
# Issue 15's throughput matrix on one CUDA device (H100/H200): one JSON line per run, the engine's
# defaults (bf16 autocast, channels_last, fused SGD, Partial FC matmul in bf16 with fp32 softmax).
#   bash bench/gpu_matrix.sh [extra train_throughput.py flags, e.g. --set train.compile=true]
set -u
PY=${PYTHON:-python}
for model in "--backbone iresnet50 --classes 93431" "--backbone mbf --classes 93431" \
             "--backbone iresnet50 --classes 2000000 --sample-rate 0.1"; do
  for mode in device loader; do
    # shellcheck disable=SC2086
    $PY bench/train_throughput.py $model --batch 512 --data "$mode" --workers 12 --steps 50 "$@" \
      || echo "{\"failed\": \"$model --data $mode\"}"
  done
done
# implicit device syncs left per step (nonzero/unique in the classifier, ...): a diagnosis run
$PY bench/train_throughput.py --backbone mbf --classes 93431 --batch 512 --data device --steps 10 --sync-debug "$@"
