#!/usr/bin/env bash
# One prepared GPU check (about 7 minutes on one H100, 9 at most), every stage's output written under $OUT as it
# finishes; a failing stage does not stop the others.
#
#   env    versions, GPU, which packages import (env.txt)
#   tests  the test suite with the tests' models on CUDA: SDFSEG_TEST_DEVICE=cuda (tests.log)
#   bench  tools/benchmark.py for confs/demo.yaml, confs/scannet.yaml and confs/replica.yaml on a
#          generated room: it/s, rays/s, test-view render rays/s, peak GPU memory (bench.log, bench.json)
#   e2e    a timed end-to-end run of confs/replica.yaml on a generated 120-frame 240 x 320 room:
#          train, render, evaluate, mesh; PQ^scene / mIoU / EA (e2e.log, e2e.json)
#
# Usage:
#   tools/gpu_check.sh                    # on the GPU machine (uses its own torch; nothing is installed
#                                         # but the wheels in .whl/, if any, into a temporary folder)
#   tools/gpu_check.sh --cpu-rehearsal    # the same stages at toy size on the CPU (a few minutes)
# Environment: OUT (output folder, default gpu_check_out), GPU_CHECK_STAGES (default "env tests bench e2e"),
# PYTHON (default python3), TEST_LIMIT / BENCH_LIMIT / E2E_LIMIT (seconds per stage on the GPU: 150 / 100 / 280).
# The GPU machine has no package index: trimesh, PyMCubes and embreex travel as wheels in .whl/
# (on a machine with the package index: pip download --no-deps --only-binary=:all: --python-version 3.12
#  -d .whl trimesh==5.2.0 PyMCubes==0.1.6 embreex==4.4.0.post1; .whl/ is git-ignored, so carry it along).
set -u
cd "$(dirname "$0")/.."
REHEARSAL=0
[ "${1:-}" = "--cpu-rehearsal" ] && REHEARSAL=1
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
STAGES="${GPU_CHECK_STAGES:-env tests bench e2e}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
    || echo "warning: could not install the wheels in .whl/" | tee -a "$OUT/summary.txt"
fi
export PYTHONPATH="$PWD:$WORK/site:${PYTHONPATH:-}"

if [ "$REHEARSAL" = 1 ]; then
  DEVICE=cpu; TESTS="tests/test_device.py"; BENCH_IT=3; ROOM_ARGS="--views 24 --height 60 --width 80"
  E2E_SET="train.iterations=60 train.checkpoint_every=60 train.log_every=20 render.mesh_resolution=64"
  TEST_LIMIT=300; BENCH_LIMIT=300; E2E_LIMIT=600
else
  DEVICE=cuda; TESTS="tests"; BENCH_IT=50; ROOM_ARGS="--views 120 --height 240 --width 320"
  E2E_SET=""
  TEST_LIMIT=${TEST_LIMIT:-150}; BENCH_LIMIT=${BENCH_LIMIT:-100}; E2E_LIMIT=${E2E_LIMIT:-280}
fi
ROOM="$WORK/room"

summary() { echo "$*" | tee -a "$OUT/summary.txt"; }
# run_stage NAME LIMIT_S COMMAND...: COMMAND's output goes to $OUT/NAME.log; its exit status and time to the summary
run_stage() {
  local name=$1 limit=$2 t0 rc
  shift 2
  t0=$(date +%s)
  timeout "$limit" bash -c "$*" >"$OUT/$name.log" 2>&1
  rc=$?
  summary "stage $name: exit $rc ($([ $rc = 124 ] && echo 'timed out, ')$(( $(date +%s) - t0 )) s)"
  return $rc
}

# the room is generated in the background from the start (single-threaded, 1-2 minutes at full size),
# while the tests run; the stages that need it wait for it
start_room() {
  ( "$PY" tools/make_room.py "$ROOM" --seed 10 $ROOM_ARGS --quiet >"$WORK/room.log" 2>&1; echo $? >"$WORK/room.rc" ) &
}
make_room() {
  local t0=$(date +%s)
  while [ ! -f "$WORK/room.rc" ]; do sleep 1; done
  echo "room ready after waiting $(( $(date +%s) - t0 )) s"
  [ "$(cat "$WORK/room.rc")" = 0 ] || { cat "$WORK/room.log"; return 1; }
}

stage_env() {
  date -u
  nvidia-smi 2>&1 | head -20
  "$PY" - <<'EOF'
import importlib, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.1f} GiB", p.multi_processor_count, "SMs")
for name in ("numpy", "scipy", "skimage", "trimesh", "mcubes", "embreex", "triton", "tinycudann", "xdist"):
    try:
        m = importlib.import_module(name)
        print(f"{name:<11}", getattr(m, "__version__", "ok"))
    except Exception as e:
        print(f"{name:<11} missing ({type(e).__name__})")
EOF
}

stage_tests() {
  local par=() threads=()
  # 8 workers at 2 CPU threads each: with torch's default (one thread per core in every worker) the
  # workers' CPU work oversubscribed the 16 cores and the suite ran past its limit
  if "$PY" -c "import xdist" 2>/dev/null && [ "$REHEARSAL" = 0 ]; then par=(-n 8); threads=(OMP_NUM_THREADS=2); fi
  env "${threads[@]}" SDFSEG_TEST_DEVICE=$DEVICE \
    "$PY" -m pytest -v -p no:cacheprovider -p no:benchmark -rf "${par[@]}" $TESTS
}

stage_bench() {
  make_room || return 1
  local rc=0 c
  for c in demo scannet replica; do
    echo "== confs/$c.yaml"
    local data="$ROOM"
    [ "$c" = demo ] && data="$WORK/demo"
    "$PY" tools/benchmark.py "confs/$c.yaml" --set data.path="$data" train.device=$DEVICE --iterations $BENCH_IT \
      --render-view --json "$WORK/bench_$c.json" || rc=1
  done
  "$PY" - "$WORK" "$OUT/bench.json" <<'EOF'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), sys.argv[2]
res = {p.stem[6:]: json.loads(p.read_text()) for p in sorted(work.glob("bench_*.json"))}
Path(out).write_text(json.dumps(res, indent=1))
print(f"{'config':<9}{'device':<8}{'it/s':>8}{'rays/s':>10}{'render rays/s':>15}{'peak MiB':>10}")
for k, r in res.items():
    print(f"{k:<9}{r['device']:<8}{r['iterations_per_second']:8.2f}{r['rays_per_second']:10.0f}"
          f"{r.get('render_rays_per_second', float('nan')):15.0f}{r['peak_memory_mb']:10.0f}")
EOF
  return $rc
}

stage_e2e() {
  make_room || return 1
  local t0 rc
  t0=$(date +%s)
  "$PY" tools/train.py confs/replica.yaml --set data.path="$ROOM" run.dir="$WORK/run" train.device=$DEVICE $E2E_SET \
    --no-progress
  rc=$?
  echo "end to end: $(( $(date +%s) - t0 )) s, exit $rc"
  "$PY" - "$WORK/run" "$OUT/e2e.json" "$(( $(date +%s) - t0 ))" <<'EOF'
import json, sys
from pathlib import Path
run, out, secs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
m = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
m["end_to_end_seconds"] = secs
Path(out).write_text(json.dumps(m, indent=1))
print({k: v for k, v in m.items() if not isinstance(v, (dict, list))})
EOF
  return $rc
}

: >"$OUT/summary.txt"
export OUT PY WORK ROOM REHEARSAL DEVICE TESTS BENCH_IT ROOM_ARGS E2E_SET
export -f summary make_room stage_env stage_tests stage_bench stage_e2e
summary "gpu_check $( [ $REHEARSAL = 1 ] && echo '(cpu rehearsal)') stages: $STAGES"
case " $STAGES " in *" bench "*|*" e2e "*) start_room ;; esac
for s in $STAGES; do
  case $s in
    env) run_stage env 30 stage_env ;;
    tests) run_stage tests $TEST_LIMIT stage_tests ;;
    bench) run_stage bench $BENCH_LIMIT stage_bench ;;
    e2e) run_stage e2e $E2E_LIMIT stage_e2e ;;
    *) summary "unknown stage $s" ;;
  esac
done
[ -f "$OUT/bench.log" ] && tail -5 "$OUT/bench.log"
cat "$OUT/summary.txt"
