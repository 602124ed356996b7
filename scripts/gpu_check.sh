#!/usr/bin/env bash
# The GPU check, in one call of under 8 minutes on one GPU: JSON lines to $OUT/gpu_check.jsonl (or to
# the folder given as $1), the full log beside them.
#   1. two epochs of the MNIST protocol (LeNet-300-100, sparse momentum 5%) on CUDA under
#      execution=masked and execution=sparse (generated data of MNIST's shape and size when the
#      real files are absent: the device machine cannot download them);
#   2. make throughput: WRN-16-8 (CIFAR shape) and ResNet-50 (224x224, 1000 classes), dense vs
#      sparse momentum, fp32 and bf16, channels_last (the default on CUDA);
#   3. torchrun --nproc_per_node=1 against a plain run of the same config.
# The device machine has PyTorch but not Hydra: scripts/gpu_wheels.sh (run here, with network)
# puts the missing wheels into .whl/, which the device call carries (`carry: [".whl"]`).
# DEVICE=cpu QUICK=1 bash scripts/gpu_check.sh /tmp/x   tries the script itself on a CPU in a minute or two
# (tests/integration/test_gpu_check.py runs it so). Each run of a comparison has its own results folder: execution and
# the launcher are not part of a run's identity, so in one folder the second run would find the first
# finished and not train. Exit status 1 when any check failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-results/bench/gpu}}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
JSONL="$OUT_DIR/gpu_check.jsonl"
: >"$JSONL"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
QUICK="${QUICK:-}"
if ! "$PY" -c "import hydra, omegaconf" 2>/dev/null && ls .whl/* >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target /tmp/site .whl/* \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
FAILED=0
note() { echo "{\"check\": \"$1\", \"status\": \"$2\", \"detail\": \"${3:-}\"}" >>"$JSONL"; FAILED=1; }
"$PY" -c "import json, sys; from snfs.machine import describe; print(json.dumps({'check': 'machine', **describe(sys.argv[1] if sys.argv[1] != 'auto' else None)}))" \
  "$DEVICE" >>"$JSONL" 2>>"$LOG" || note machine failed "see gpu_check.log"

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
} 2>&1 | tee -a "$LOG"

DATA=(dataset=fake "dataset.shape=[1,28,28]" dataset.n_train=54000 dataset.n_val=6000 dataset.n_test=10000)
[ -n "$QUICK" ] && DATA=(dataset=fake "dataset.shape=[1,28,28]" dataset.n_train=2000 dataset.n_val=200 dataset.n_test=200)
if [ -z "$QUICK" ] && { [ -f ../shared/data/MNIST/raw/train-images-idx3-ubyte ] || [ -f data/MNIST/raw/train-images-idx3-ubyte ]; }; then
  root=data; [ -f ../shared/data/MNIST/raw/train-images-idx3-ubyte ] && root=../shared/data
  DATA=(dataset=mnist "data.root=$root" dataset.download=false)
fi
COMMON=(epochs=2 device=$DEVICE logger.mode=disabled progress=false "hydra.run.dir=$TMP/hydra")

# 1. two epochs of the MNIST protocol under both execution modes
for mode in masked sparse; do
  start=$(date +%s.%N)
  if timeout 150 "$PY" -m snfs.train "${DATA[@]}" "${COMMON[@]}" execution=$mode "run_id=mnist-$mode" \
      "results_dir=$TMP/runs-$mode" >>"$LOG" 2>&1; then
    "$PY" - "$TMP/runs-$mode/mnist-$mode.json" "$mode" "$start" >>"$JSONL" <<'EOF'
import json, sys, time
r = json.load(open(sys.argv[1]))
print(json.dumps({"check": "mnist_2_epochs", "execution": sys.argv[2], "test_error": r["test_error"],
                  "wall_time_s": r["wall_time_s"], "epoch_time_s": [h["epoch_time_s"] for h in r["history"]],
                  "process_s": round(time.time() - float(sys.argv[3]), 1), "machine": r["machine"]}))
EOF
  else
    note "mnist_2_epochs_$mode" failed "see gpu_check.log"
  fi
done

# 2. throughput: dense vs sparse momentum, fp32 and bf16
STEPS=20; BATCH=128; BIG_STEPS=10; BIG_BATCH=64; MODELS=(wrn16_8 resnet50)
# QUICK on a CPU: a WRN-16-8 step at batch 128 takes seconds, so a smaller batch keeps the dry run short
[ -n "$QUICK" ] && { STEPS=2; BATCH=16; BIG_STEPS=1; BIG_BATCH=2; MODELS=(wrn16_8); }
for precision in fp32 bf16; do
  timeout 150 "$PY" -m benchmarks.throughput --model wrn16_8 --sparse dense momentum --device $DEVICE --precision $precision \
    --batch-size $BATCH --steps $STEPS --epochs 3 2>>"$LOG" | tee -a "$LOG" | grep '^{' >>"$JSONL" \
    || note "throughput_wrn16_8_$precision" failed "exit status of the pipeline: $? (124: the timeout)"
  [ -n "$QUICK" ] && continue
  timeout 150 "$PY" -m benchmarks.throughput --model resnet50 --shape 3 224 224 --classes 1000 --batch-size $BIG_BATCH \
    --sparse dense momentum --device $DEVICE --precision $precision --steps $BIG_STEPS --epochs 3 2>>"$LOG" \
    | tee -a "$LOG" | grep '^{' >>"$JSONL" || note "throughput_resnet50_$precision" failed
done

# 3. torchrun with one process against a plain run of the same config
N_SMALL=20000; [ -n "$QUICK" ] && N_SMALL=2000
SMALL=(dataset=fake "dataset.shape=[1,28,28]" "dataset.n_train=$N_SMALL" dataset.n_val=1000
       dataset.n_test=1000 epochs=2 device=$DEVICE logger.mode=disabled progress=false "hydra.run.dir=$TMP/hydra")
for launcher in plain torchrun; do
  start=$(date +%s.%N)
  if [ $launcher = plain ]; then cmd=("$PY" -m snfs.train); else cmd=("$PY" -m torch.distributed.run --nproc_per_node=1 -m snfs.train); fi
  if timeout 120 "${cmd[@]}" "${SMALL[@]}" "run_id=ddp-$launcher" "results_dir=$TMP/runs-$launcher" >>"$LOG" 2>&1; then
    "$PY" - "$TMP/runs-$launcher/ddp-$launcher.json" "$launcher" "$start" >>"$JSONL" <<'EOF'
import json, sys, time
r = json.load(open(sys.argv[1]))
print(json.dumps({"check": "torchrun_vs_plain", "launcher": sys.argv[2], "test_error": r["test_error"],
                  "wall_time_s": r["wall_time_s"], "world_size": r["world_size"],
                  "process_s": round(time.time() - float(sys.argv[3]), 1)}))
EOF
  else
    note "torchrun_vs_plain_$launcher" failed "see gpu_check.log"
  fi
done
echo "wrote $JSONL" | tee -a "$LOG"
cat "$JSONL"
exit $FAILED
