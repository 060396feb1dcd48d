#!/usr/bin/env bash
# Every GPU measurement of the project in one prepared run (~8 minutes on one H100/H200), one markdown report.
#
#   bash benchmarks/gpu.sh --stage-data [--reference PATH]   # once, where ../shared/data and the registries are:
#        fills .gpu_data/ (git-ignored, ~50 MiB) inside the checkout: DAVIS-2016 val (6 sequences), 3 clips to
#        decode, 10 training videos, wheels for the device, and PATH/code (a videowalk clone) if given
#   bash benchmarks/gpu.sh --out DIR               # on the GPU machine: DIR/gpu_report.md, machine.txt, gpu_logs.txt
#   bash benchmarks/gpu.sh --dry-run --out DIR     # on any CPU: tiny sizes, same report (the suite runs this)
#
# Options: --reference PATH (a local clone of ajabri/videowalk: its CRW step timed on the same GPU; default
#          .gpu_data/videowalk when staged),
#          --budget SECONDS (whole run; default 470; dry run 1800, its limits only stop hangs: it takes
#          ~1.5 min of CPU, about as long on 2 idle cores), --data DIR (default .gpu_data),
#          --shared DIR (for --stage-data; default ../shared/data), --python PY (default python3),
#          --allow-cpu (the full-size steps without a GPU: only to check the script's commands; they time out).
# Each benchmark runs as its own process under `timeout`, capped by what is left of the budget; a step that fails
# or runs out of time is recorded in the report (with the end of its output) and the run goes on.
# Installing: GPU machines here reach no package registry, so --stage-data also downloads the wheels the device
# image lacks (for its Python 3.12 / torch 2.11) into .gpu_data/wheels; gpu.sh installs them with --no-index into
# a private folder. On a machine with registries, whatever is still missing comes from `pip install -e .[test]`
# and torchcodec (and, for torchcodec, Debian's FFmpeg libraries through apt-get); every install step may fail.
set -u -o pipefail
{  # read whole before running: editing this file during a run cannot change the run

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="" DRY=0 ALLOW_CPU=0 STAGE=0 REFERENCE="" BUDGET="" PY=${PYTHON:-python3}
DATA="$REPO/.gpu_data" SHARED="$REPO/../shared/data"
usage() { sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --allow-cpu) ALLOW_CPU=1; shift ;;
    --stage-data) STAGE=1; shift ;;
    --reference) REFERENCE=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --shared) SHARED=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# ------------------------------------------------------------------------------------------ staging the data
# Wheels for the device image (KINDS.md: Python 3.12, torch 2.11, no registry): what vidssl imports and it lacks,
# plus the optional decoders. torchcodec 0.11 is the release built against torch 2.11.
DEVICE_WHEELS="kornia==0.9.* kornia-rs zlib-ng torchcodec==0.11.* decord"
DAVIS_VAL="blackswan car-shadow dog drift-straight kite-surf scooter-black"
MAX_MIB=60   # the device tool carries at most 64 MiB, the checkout included

stage_data() {
  [ -d "$SHARED/davis2016/JPEGImages" ] || { echo "gpu.sh: no $SHARED/davis2016 (give --shared DIR)" >&2; exit 2; }
  mkdir -p "$DATA/davis2016/JPEGImages/480p" "$DATA/davis2016/Annotations/480p" "$DATA/videos" "$DATA/train" \
           "$DATA/wheels"
  for seq in $DAVIS_VAL; do
    for kind in JPEGImages Annotations; do
      rm -rf "$DATA/davis2016/$kind/480p/$seq"
      cp -r "$SHARED/davis2016/$kind/480p/$seq" "$DATA/davis2016/$kind/480p/$seq"
    done
  done
  # decoding: two sample clips and a DAVIS-sized 480p one; training: the 10 smallest DAVIS-2016 training videos
  cp "$SHARED/videos/bikes.mp4" "$SHARED/videos/bigbuckbunny.mp4" "$SHARED/videos/davis2016-train/bear.mp4" \
     "$DATA/videos/"
  rm -f "$DATA"/train/*.mp4
  ls -S "$SHARED"/videos/davis2016-train/*.mp4 | tail -n 10 | while read -r f; do cp "$f" "$DATA/train/"; done
  if ! ls "$DATA"/wheels/*.whl >/dev/null 2>&1; then
    set -f  # the version patterns are not file globs
    # shellcheck disable=SC2086
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 -d "$DATA/wheels" $DEVICE_WHEELS \
      || echo "gpu.sh: could not download the wheels; the GPU run will need registries" >&2
    set +f
  fi
  if [ -n "$REFERENCE" ]; then  # the reference CRW (ajabri/videowalk, a local clone): its code/ folder, ~0.2 MiB
    [ -f "$REFERENCE/code/model.py" ] || { echo "gpu.sh: $REFERENCE/code/model.py not found" >&2; exit 2; }
    rm -rf "$DATA/videowalk"; mkdir -p "$DATA/videowalk"
    cp -r "$REFERENCE/code" "$DATA/videowalk/code"; rm -f "$DATA/videowalk/code/"*.pth
  fi
  local mib; mib=$(du -sm "$DATA" | cut -f1)
  echo "staged $DATA: ${mib} MiB"; du -sh "$DATA"/* | sed 's/^/  /'
  if [ "$mib" -gt "$MAX_MIB" ]; then
    echo "gpu.sh: $DATA is over $MAX_MIB MiB: the device tool would not carry it (drop wheels/decord-*)" >&2; exit 1
  fi
  grep -qx '/.gpu_data/' "$REPO/.gitignore" 2>/dev/null || echo "note: add '/.gpu_data/' to .gitignore" >&2
}

if [ "$STAGE" = 1 ]; then stage_data; exit 0; fi
[ -n "$OUT" ] || { echo "gpu.sh: --out DIR is required (see --help)" >&2; exit 2; }
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_bench.XXXXXX")
mkdir -p "$WORK/logs"
: > "$WORK/steps.tsv"
export PYTHONPATH="$WORK/site:$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -n "$BUDGET" ] || BUDGET=$([ "$DRY" = 1 ] && echo 1800 || echo 470)
START=$SECONDS
cd "$REPO"

record() {  # name status rc seconds limit note
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" >> "$WORK/steps.tsv"
}

run_step() {  # run_step NAME CAP_SECONDS COMMAND...: the command under `timeout`, capped by the time left
  local name=$1 cap=$2; shift 2
  local left=$((BUDGET - (SECONDS - START))) limit t0 rc status
  limit=$(( cap < left ? cap : left ))
  limit=$(( limit < ${GPU_SH_STEP_CAP:-100000} ? limit : GPU_SH_STEP_CAP ))  # checking the commands: short steps
  if [ "$limit" -lt 10 ]; then
    record "$name" "skipped" "-" "0" "$limit" "out of time: ${left}s of the ${BUDGET}s budget left"
    echo "[gpu.sh] $name: skipped (out of time)"; return 0
  fi
  echo "[gpu.sh] $name (limit ${limit}s): $*"
  t0=$SECONDS
  timeout -k 10 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status="ok" ;;
    124|137) status="timed out" ;;
    *) status="failed" ;;
  esac
  record "$name" "$status" "$rc" "$((SECONDS - t0))" "$limit"
  echo "[gpu.sh] $name: $status (rc $rc, $((SECONDS - t0))s)"
}

# ------------------------------------------------------------------------------------------ installing
install() {
  local core="torch torchvision numpy cv2 yaml tqdm scipy PIL safetensors kornia"
  missing() { "$PY" - "$@" <<'EOF'
import importlib, sys
bad = []
for m in sys.argv[1:]:
    try:
        importlib.import_module(m)
    except Exception:
        bad.append(m)
print(" ".join(bad))
EOF
  }
  echo "python: $(command -v "$PY") ($("$PY" --version 2>&1))"
  if [ "$DRY" = 1 ] || [ "$ALLOW_CPU" = 1 ]; then echo "dry run or --allow-cpu: nothing installed"; return 0; fi
  if ls "$DATA"/wheels/*.whl >/dev/null 2>&1; then
    echo "installing the staged wheels into $WORK/site (no registry needed)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$DATA"/wheels/*.whl \
      || echo "staged wheels: pip failed"
  fi
  local miss; miss=$(missing $core zlib_ng torchcodec)
  if [ -n "$miss" ]; then
    echo "still missing: $miss; trying the registries"
    timeout 180 "$PY" -m pip install -q --retries 0 --timeout 15 -e "$REPO[test]" torchcodec \
      || echo "pip install from the registries failed (no network?)"
  fi
  if [ -n "$(missing torchcodec)" ] && "$PY" -c "import importlib.util as u, sys; sys.exit(not u.find_spec('torchcodec'))"; then
    echo "torchcodec is installed but cannot load (FFmpeg's libraries?): trying Debian's"
    if command -v apt-get >/dev/null; then
      (timeout 60 apt-get update -q && timeout 120 apt-get install -y -q --no-install-recommends ffmpeg) \
        || echo "apt-get failed: torchcodec stays unavailable (the other backends are measured)"
    fi
  fi
  echo "missing after install: $(missing $core zlib_ng torchcodec decord av)"
  "$PY" -c "import vidssl, sys; print('vidssl from', vidssl.__file__)"
}
T0=$SECONDS; install > "$WORK/logs/install.log" 2>&1; RC=$?
record install "$([ $RC = 0 ] && echo ok || echo failed)" "$RC" "$((SECONDS - T0))" "-"
echo "[gpu.sh] install: rc $RC ($((SECONDS - T0))s)"

# ------------------------------------------------------------------------------------------ the machine
"$PY" benchmarks/gpu_report.py facts "$WORK" "$OUT" > "$WORK/logs/facts.log" 2>&1 \
  || echo "facts failed: see $WORK/logs/facts.log"
DEV=cpu
if [ "$DRY" = 0 ] && [ "$ALLOW_CPU" = 0 ]; then
  if ! command -v nvidia-smi >/dev/null || ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    record gpu_check "failed" 1 0 0 "no nvidia-smi or torch sees no GPU: the GPU steps were not run"
    "$PY" benchmarks/gpu_report.py assemble "$WORK" "$OUT" --mode "GPU run, but NO GPU found"
    echo "gpu.sh: no GPU here (nvidia-smi / torch.cuda); report in $OUT/gpu_report.md" >&2
    exit 1
  fi
  DEV=cuda
fi

# ------------------------------------------------------------------------------------------ the benchmarks
# Most important first: the budget cuts the tail. Real sizes | dry-run sizes.
[ -z "$REFERENCE" ] && [ -f "$DATA/videowalk/code/model.py" ] && REFERENCE="$DATA/videowalk"
REF=(); [ -n "$REFERENCE" ] && REF=(--reference "$REFERENCE")
HAVE_DAVIS=0; [ -d "$DATA/davis2016/JPEGImages/480p" ] && HAVE_DAVIS=1
HAVE_VIDEOS=0; ls "$DATA"/videos/*.mp4 >/dev/null 2>&1 && HAVE_VIDEOS=1
HAVE_TRAIN=0; ls "$DATA"/train/*.mp4 >/dev/null 2>&1 && HAVE_TRAIN=1
TRAIN_ROOT=(); [ "$HAVE_TRAIN" = 1 ] && TRAIN_ROOT=(--root "$DATA/train")
TRAINER_METHODS="crw byol dino timecycle"
for m in mae siammae videomae; do [ -f "configs/${m}_demo.yaml" ] && TRAINER_METHODS="$TRAINER_METHODS $m"; done

if [ "$DRY" = 0 ]; then
  run_step crw 90 "$PY" benchmarks/bench_crw.py --device "$DEV" --recipes paper --batch 20 --steps 10 \
    --variants fp32,bf16,bf16_cl "${REF[@]}"
  run_step propagation 60 "$PY" benchmarks/bench_propagation.py --device "$DEV" --tiles 16,5,10,32 --frames 30 \
    --skip-dense
  if [ "$HAVE_DAVIS" = 1 ]; then
    run_step eval 150 "$PY" benchmarks/bench_eval.py --device "$DEV" --davis-root "$DATA/davis2016" --copies 7
  else
    record eval "skipped" "-" 0 0 "no $DATA/davis2016: run bash benchmarks/gpu.sh --stage-data first"
  fi
  VIDEOS=(); [ "$HAVE_VIDEOS" = 1 ] && VIDEOS=(--videos "$DATA"/videos/*.mp4)
  run_step decode 60 "$PY" benchmarks/bench_decode.py --gpu --clips 10 "${VIDEOS[@]}"
  for m in $TRAINER_METHODS; do
    run_step "trainer_$m" 45 "$PY" benchmarks/bench_trainer.py --device "$DEV" --methods "$m" --steps 10 \
      --repeats 2 --workers "$(nproc)" "${TRAIN_ROOT[@]}" --set trainer.batch_size=32
  done
  LEFT=$((BUDGET - (SECONDS - START)))
  if [ "$LEFT" -ge 90 ] && [ "$HAVE_DAVIS" = 1 ]; then
    LEARN_CFG=configs/crw_demo.yaml; [ -f configs/crw_cpu.yaml ] && LEARN_CFG=configs/crw_cpu.yaml
    run_step learning "$LEFT" "$PY" benchmarks/gpu_report.py learning --out "$WORK/learning" \
      --config "$LEARN_CFG" "${TRAIN_ROOT[@]}" --davis-root "$DATA/davis2016" \
      --seconds $((LEFT - 10)) --eval-seconds 40 --ckpt-every 50 \
      --set trainer.device="$DEV" "data.num_workers=$(nproc)" trainer.batch_size=32
  else
    record learning "skipped" "-" 0 0 "needs 90 s and the staged DAVIS data; ${LEFT}s left"
  fi
else
  run_step crw 600 "$PY" benchmarks/bench_crw.py --device cpu --recipes demo --img 64 --batch 1 --steps 1 \
    --variants fp32,bf16,bf16_cl "${REF[@]}"
  run_step propagation 600 "$PY" benchmarks/bench_propagation.py --device cpu --tiles 16,5 --size 12x16 \
    --channels 16 --frames 4 --ref-frames 2
  run_step eval 600 "$PY" benchmarks/bench_eval.py --device cpu --synthetic 4 --synthetic-size 64x96
  VIDEOS=(); [ "$HAVE_VIDEOS" = 1 ] && VIDEOS=(--videos "$DATA/videos/bikes.mp4")
  run_step decode 600 "$PY" benchmarks/bench_decode.py --gpu --clips 2 --seq-frames 8 --max-videos 1 "${VIDEOS[@]}"
  run_step trainer_crw 600 "$PY" benchmarks/bench_trainer.py --device cpu --methods crw --steps 1 --repeats 1 \
    --workers 0 "${TRAIN_ROOT[@]}" --set trainer.batch_size=2 data.img_size=64
  run_step learning 600 "$PY" benchmarks/gpu_report.py learning --out "$WORK/learning" \
    --config configs/crw_demo.yaml "${TRAIN_ROOT[@]}" --seconds 500 --eval-seconds 200 --ckpt-every 1 \
    --max-steps 1 --set trainer.device=cpu data.num_workers=0 trainer.batch_size=2 data.img_size=64
fi

MODE=$([ "$DRY" = 1 ] && echo "dry run (CPU, tiny sizes: the figures mean nothing)" || echo "GPU run")
"$PY" benchmarks/gpu_report.py assemble "$WORK" "$OUT" --mode "$MODE" || { echo "gpu.sh: report failed" >&2; exit 1; }
echo "[gpu.sh] done in $((SECONDS - START))s: $OUT/gpu_report.md, $OUT/machine.txt, $OUT/gpu_logs.txt"
rm -rf "$WORK"
exit 0
}
