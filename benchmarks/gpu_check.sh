#!/usr/bin/env bash
# The GPU check, ready to run on a fresh machine with this repository checked out (no network needed):
# every method a few iterations at CIFAR-10's shape on CUDA (--deterministic), one shortened dc evaluation, the
# vectorised evaluator (--path vmap) against the loop; seconds and peak memory per step, and any failure, go to
# benchmarks/results/gpu-check.md (rewritten after every step; a failing step is recorded and the next one runs).
# Under 8 minutes on one GPU: the whole run is stopped at LIMIT seconds (default 450).
#
#   benchmarks/gpu_check.sh                      # CUDA
#   DEVICE=cpu benchmarks/gpu_check.sh           # a CPU rehearsal: small data and budgets (the defaults below)
#
# Python: $PYTHON, else this repository's .venv (`make setup`), else python3 (on the lent GPU machines, the one
# that holds torch). A package that python lacks (kornia, on those machines) is installed with pip --no-index
# from the wheels in $WHEELS (default .whl/), into a folder of its own; without network, bring them along:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl kornia==0.9.0 kornia_rs==0.2.0
set -u
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cpu ]; then   # the rehearsal: every step runs, on data and budgets a loaded 2-core machine can take
    : "${ITERATIONS:=2}" "${EPOCHS:=2}" "${PER_CLASS:=20}" "${BATCH_REAL:=16}" "${MTT:=mtt.cifar10-ipc1}"
    : "${MTT_SET:=syn_steps=5}"   # MTT's 50 unrolled steps took 9 minutes an iteration on the loaded 2 cores
    : "${OUT_FILE:=benchmarks/results/gpu-check-cpu-rehearsal.md}" "${LIMIT:=1500}"
fi
ITERATIONS=${ITERATIONS:-5}; EPOCHS=${EPOCHS:-20}; PER_CLASS=${PER_CLASS:-300}; MTT=${MTT:-mtt.cifar10-ipc10}
OUT_FILE=${OUT_FILE:-benchmarks/results/gpu-check.md}; LIMIT=${LIMIT:-450}; WHEELS=${WHEELS:-.whl}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
SITE=$(mktemp -d /tmp/dsdistill-gpu-site.XXXXXX)
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
missing=$("$PY" - <<'PY'
import importlib.util
print(" ".join(m for m in ("torch", "torchvision", "kornia", "numpy", "scipy", "h5py", "tqdm", "matplotlib")
               if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
    echo "python $PY lacks: $missing; installing from $WHEELS" >&2
    if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl \
            || echo "pip could not install the wheels in $WHEELS" >&2
    elif "$PY" -m pip install -q --target "$SITE" $missing; then :   # where a registry is reachable
    else echo "no wheels in $WHEELS and no registry: the import will fail and be recorded" >&2; fi
fi
mkdir -p "$(dirname "$OUT_FILE")"
args=(--device "$DEVICE" --iterations "$ITERATIONS" --epochs "$EPOCHS" --per-class "$PER_CLASS" --mtt "$MTT"
      --out "$OUT_FILE")
[ -n "${BATCH_REAL:-}" ] && args+=(--batch-real "$BATCH_REAL")
[ -n "${MTT_SET:-}" ] && args+=(--mtt-set "$MTT_SET")
LOG=$(mktemp /tmp/dsdistill-gpu-check.XXXXXX.log)
[ "$DEVICE" != cpu ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$LOG" 2>&1
timeout "$LIMIT" "$PY" benchmarks/gpu_check.py "${args[@]}" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then   # a crash before the first step, a timeout or failing steps: keep the evidence
    { [ -f "$OUT_FILE" ] || echo "# GPU check: no step finished"; echo
      echo "Exit status $rc (124: stopped at the ${LIMIT}-second limit). End of the log:"; echo '```'
      tail -n 40 "$LOG"; echo '```'; } >>"$OUT_FILE.tmp"
    { [ -f "$OUT_FILE" ] && cat "$OUT_FILE"; cat "$OUT_FILE.tmp"; } >"$OUT_FILE.new"
    mv "$OUT_FILE.new" "$OUT_FILE"; rm -f "$OUT_FILE.tmp"
fi
echo "wrote $OUT_FILE (exit $rc)"
exit "$rc"
