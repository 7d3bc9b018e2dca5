#!/usr/bin/env bash
# Architecture search end to end on the synthetic set (docs/nas.md, "Search and transfer"):
#   search under a budget → the chosen subnet's AP inside the supernet (re-calibrated) → transfer WITH and
#   WITHOUT re-calibration (evaluate.py) → fine-tune N steps from the transfer (head kept; head
#   re-initialised as the authors' loader did) vs the same architecture from scratch (evaluate.py).
#
#   SUPERNET=/tmp/supernet scripts/nas_e2e_synthetic.sh        # OUT=/tmp/nas_e2e by default
#
# Every step is a documented command line; AP lines are collected in $OUT/summary.txt. The supernet's
# training sizes are img_size / DOWNSCALE (scripts/train_supernet_smoke.py: 64..128 for 256..512).
set -euo pipefail
cd "$(dirname "$0")/.."
SUPERNET=${SUPERNET:?set SUPERNET to a supernet checkpoint dir or training workdir}
OUT=${OUT:-/tmp/nas_e2e}
BUDGET=${BUDGET:-1.2G}
DOWNSCALE=${DOWNSCALE:-4}
RES=${RES:-256,320,384}
POP=${POP:-10}
ITERS=${ITERS:-4}
IMAGES=${IMAGES:-0}
CALIB=${CALIB:-4}
STEPS=${STEPS:-500}
PY=${PY:-.venv/bin/python}
CFG=configs/nas_finetune_synthetic.py
mkdir -p "$OUT"
S="$OUT/summary.txt"
: > "$S"
ap() { tail -1 "$1" | $PY -c 'import json,sys; print(json.loads(sys.stdin.read())["AP"])'; }

start=$(date +%s)
$PY -m litepose_jax.nas.search --config=$CFG --supernet="$SUPERNET" --macs="$BUDGET" --workdir="$OUT/search" \
  --population=$POP --iterations=$ITERS --max_images=$IMAGES --calib_batches=$CALIB --resolutions="$RES" \
  --downscale=$DOWNSCALE --noprogress 2>&1 | grep -v -e oneDNN -e absl:: | tee "$OUT/search.log"
echo "search wall seconds: $(( $(date +%s) - start ))" | tee -a "$S"
grep -e '^budget' -e '^evaluations' "$OUT/search.log" >> "$S"
$PY -c "import json; r = json.load(open('$OUT/search/search_result.json')); b = r['budgets']['$BUDGET']; \
print('AP inside the supernet (re-calibrated, search):', b['AP'], b['genes'], 's/candidate', \
r['seconds_per_candidate_median'])" | tee -a "$S"
ARCH="$OUT/search/best_${BUDGET}.json"
SIZE=$($PY -c "import json; print(json.load(open('$ARCH'))['img_size'] // $DOWNSCALE)")

for mode in recal norecal; do
  flag=""; [ $mode = norecal ] && flag=--no_recalibrate
  $PY -m litepose_jax.nas.transfer --config=$CFG --supernet="$SUPERNET" --arch="$ARCH" --out="$OUT/xfer_$mode" \
    --calib_batches=$CALIB --downscale=$DOWNSCALE $flag 2>&1 | tail -1
done
# The authors' fine-tuning loader dropped every 'deconv'/'final' weight (spec §6): the same transfer with
# a freshly initialised head, to compare.
$PY - "$OUT/xfer_recal" "$OUT/xfer_nohead" <<'EOF'
import sys, jax
from litepose_jax import checkpoint, models
src, dst = sys.argv[1:]
m = checkpoint.load_model(src)
fresh = models.init_variables(m.model, jax.random.PRNGKey(1), 64)
head = lambda name: name.startswith(('deconv', 'final'))
v = {c: {n: (fresh[c][n] if head(n) else t) for n, t in m.variables[c].items()} for c in m.variables}
checkpoint.save_model(dst, v, dict(m.meta, head='re-initialised'))
print('head re-initialised →', dst)
EOF

evaluate() {  # name checkpoint
  $PY evaluate.py --config=$CFG --ckpt="$2" --workdir="$OUT/eval_$1" --config.input.size=$SIZE \
    --config.eval.max_images=0 > "$OUT/eval_$1.log" 2>&1
  echo "AP $1: $(ap "$OUT/eval_$1.log")" | tee -a "$S"
}
evaluate transfer_recalibrated "$OUT/xfer_recal"
evaluate transfer_not_recalibrated "$OUT/xfer_norecal"

for run in finetune:xfer_recal finetune_nohead:xfer_nohead scratch:; do
  name=${run%%:*}; init=${run#*:}
  extra=""; [ -n "$init" ] && extra="--config.train.init_from=$OUT/$init"
  t0=$(date +%s)
  $PY train.py --config=$CFG --workdir="$OUT/$name" --config.model.arch="$ARCH" --config.input.size=$SIZE \
    --config.num_train_steps=$STEPS --config.checkpoint_every_steps=$STEPS $extra > "$OUT/$name.log" 2>&1
  echo "$name: $STEPS steps in $(( $(date +%s) - t0 )) s" | tee -a "$S"
  evaluate "$name" "$OUT/$name"
done
echo "total wall seconds: $(( $(date +%s) - start ))" | tee -a "$S"
