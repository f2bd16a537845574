#!/usr/bin/env bash
# GPU check, run on a lent device machine (see README "GPU"): models, measurements and studies on
# cuda, the batched head-first benchmark on cuda, and a timed slice of the subspace paper preset.
# Usage there:  bash benchmarks/device_check.sh   (writes into $OUT, or ./device_out)
set -u
OUT=${OUT:-device_out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then  # packages the device image lacks (pydantic), as wheels
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
LOG="$OUT/device_log.txt"
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, sklearn, pydantic; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'sklearn', sklearn.__version__, 'pydantic', pydantic.__version__)"
echo "== diagonal tiny on cuda"
/usr/bin/time -f "%e s" python3 -m mtlab reproduce diagonal --preset tiny --device cuda --out /tmp/dg --quiet
cp /tmp/dg/claims.json "$OUT/diagonal_tiny_cuda_claims.json"
echo "== subspace quick on cuda"
/usr/bin/time -f "%e s" python3 -m mtlab reproduce subspace --preset quick --device cuda --out /tmp/sq --quiet
cp /tmp/sq/claims.json "$OUT/subspace_quick_cuda_claims.json"
echo "== head-first batched vs per-task loop on cuda"
python3 benchmarks/headfirst_batched.py --device cuda --json "$OUT/headfirst_batched_cuda.json"
echo "== Jacobian engine backends on cuda (MLP and CNN trunks, T = 2, 8, 32)"
python3 benchmarks/jacobian_engine.py --device cuda --json "$OUT/jacobian_engine_cuda.json"
echo "== subspace paper preset, 1 seed, at most ${PAPER_S:-200} s"
timeout "${PAPER_S:-200}" python3 -m mtlab reproduce subspace --preset paper --seeds 1 \
    --device cuda --out /tmp/sp --quiet --no-report
echo "paper exit: $?"
python3 - <<'PY'
import json
rows = [json.loads(l) for l in open("/tmp/sp/rows.jsonl")] if __import__("os").path.exists("/tmp/sp/rows.jsonl") else []
by = {}
for r in rows:
    k = (r["part"], r["features"])
    n, s = by.get(k, (0, 0.0))
    by[k] = (n + 1, s + r["wall_s"])
for k, (n, s) in sorted(by.items()):
    print(f"paper {k[0]:12s} {k[1]:16s} runs {n:3d}  {s:8.1f} s  ({s / n:6.2f} s/run)")
print("paper runs finished:", len(rows))
PY
cp /tmp/sp/rows.jsonl "$OUT/subspace_paper_rows.jsonl" 2>/dev/null
echo "== subspace paper preset on Ray, 1 seed, 4 chunks per GPU, at most ${RAY_S:-200} s"
if python3 -c "import ray" 2>/dev/null; then
    /usr/bin/time -f "%e s" timeout "${RAY_S:-200}" python3 -m mtlab reproduce subspace \
        --preset paper --seeds 1 --out /tmp/spr --quiet --no-report \
        --executor ray --gpus-per-chunk 0.25
    echo "ray paper exit: $?  runs finished: $(wc -l < /tmp/spr/rows.jsonl 2>/dev/null || echo 0)"
else
    echo "ray is not installed on this machine: skipped (pip install \"mtlab[ray]\")"
fi
} 2>&1 | tee "$LOG"
