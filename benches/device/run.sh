#!/usr/bin/env bash
# Runs ON the device machine (see prepare.sh): the Vulkan loader, the adapter, the GPU tests,
# `gpsamp bench` (--quick; the evaluation table up to 65 536 chains; sampler, study, MDN and
# EM rows), NumPyro NUTS on the same GPU, and `gpsamp sample` at 1 024 and 16 384 chains.
# What comes back lands in $OUT: devices.txt, tests.log, quick/eval/rest .json (at most 8 files come back),
# numpyro_gpu_*.json.
# PARTS (default all: tests quick eval numpyro sample rest) picks the steps.
set -uo pipefail
T0=$(date +%s)
PARTS=" ${PARTS:-tests quick eval numpyro sample rest} "
part() { [[ "$PARTS" == *" $1 "* ]] && el "$1"; }
el() { echo "[+$(( $(date +%s) - T0 ))s] $*"; }
source benches/device/setup.sh
if part tests; then
for t in /tmp/c/tests/*; do
  el "== $t"; GPSAMP_REQUIRE_GPU=1 timeout 90 "$t" --skip cli_ 2>&1 | grep -E "^test |test result|panicked|SKIPPING|assert|EpochStats" | tail -n 40
done > "$OUT/tests.log" 2>&1
grep -E "==|test result" "$OUT/tests.log"
fi
if part quick; then
  timeout 100 $B bench --quick --json > "$OUT/quick.json" 2> /tmp/quick.err; echo "rc=$?"; tail -n 25 /tmp/quick.err
fi
if part eval; then
  timeout 90 $B bench --json --quiet --reliable-chains 0 --no-sampler --study-datasets 0 --em-sequences 0 --mdn-pairs 0 --seconds 0.3 --chains 1,64,1024,16384,65536 > "$OUT/eval.json" 2> /tmp/eval.err; echo "rc=$?"; tail -n 30 /tmp/eval.err
fi
if part numpyro; then
cd /tmp && python3 "$OLDPWD/benches/numpyro_mixglm.py" --write-data /tmp/tut.csv
# NumPyro at 1 024 chains (vectorised NUTS) made no check within 170 s on an H100: left out.
for spec in "gpu 4 500"; do set -- $spec
  PYTHONUNBUFFERED=1 timeout 80 python3 "$OLDPWD/benches/numpyro_mixglm.py" --data /tmp/tut.csv --platform $1 --chains $2 --chunk $3 --json "$OUT/numpyro_$1_$2.json" 2>&1 | grep -v "^ \|^{\|^}" | tail -n 6
done
cd "$OLDPWD"
fi
if part sample; then
[ -f /tmp/tut.csv ] || python3 benches/numpyro_mixglm.py --write-data /tmp/tut.csv
for c in 1024 16384; do /usr/bin/time -f "%e s wall %M KB" timeout 60 $B sample --model mixglm --data /tmp/tut.csv --x x0 --chains $c --target-ess 10000 --backend gpu --out /tmp/fit$c 2>&1 | tail -n 4; done
fi
if part rest; then
  timeout 150 $B bench --json --reliable-chains 0 --chains 1 --families mixglm --sampler-chains 1024,16384 > "$OUT/rest.json" 2> /tmp/rest.err; echo "rc=$?"; tail -n 40 /tmp/rest.err
fi
el done
