#!/usr/bin/env bash
# Runs ON the device machine: the Stan checks of issue 14 on a real GPU. Prepare HERE with
#   GPU_TESTS=stan bash benches/device/prepare.sh
# then one device run, carry [".gpu-carry", ".gl"], command `bash .gpu-carry/stan.sh`
# (timeout_s about 500; the parts stop early as DEADLINE nears; PARTS, default all of
# "tests pdb bench es numpyro", picks them). What comes back in $OUT:
#   devices.txt     gpsamp devices, nvidia-smi, the CPU
#   tests.log       tests/stan.rs's GPU tests (GPSAMP_REQUIRE_GPU=1)
#   pdb.txt         every posteriordb fixture, 16 chains 1 000 + 1 000, GPU then CPU:
#                   wall seconds, and the GPU run's summary.csv (checked here against the
#                   references with tests/fixtures/posteriordb/*/reference)
#   stan_bench.json gpsamp bench's Stan rows (compile, mixture vs mixglm, eight schools 4 096)
#   es4096.csv      eight schools, 4 096 chains, 1 000 + 1 000 on the GPU: summary.csv
#   numpyro_es.json benches/numpyro_eight_schools.py, the same case on the same GPU
set -uo pipefail
T0=$(date +%s)
DEADLINE=${DEADLINE:-480}
PARTS=" ${PARTS:-tests pdb bench es numpyro} "
part() { [[ "$PARTS" == *" $1 "* ]]; }
el() { echo "[+$(( $(date +%s) - T0 ))s] $*"; }
# A part's timeout: what it asks for, or what is left before the deadline.
budget() { local l=$(( DEADLINE - ($(date +%s) - T0) - 5 )); [ "$l" -lt "$1" ] && echo $(( l > 1 ? l : 1 )) || echo "$1"; }
source benches/device/setup.sh
# The test binary and the bench find the fixtures and the gpsamp binary by the path of the
# checkout they were built in (prepare.sh writes it): make that path this checkout.
built=$(cat .gpu-carry/root 2>/dev/null || echo /work/main)
if [ "$(cd "$built" 2>/dev/null && pwd -P)" != "$(pwd -P)" ]; then
  mkdir -p "$(dirname "$built")" && ln -sfn "$PWD" "$built"
fi
mkdir -p target/release && cp "$B" target/release/gpsamp

if part tests; then
el "tests"
GPSAMP_REQUIRE_GPU=1 timeout "$(budget 150)" /tmp/c/tests/stan --exact --test-threads 1 \
  gpu_kernel_matches_cpu_on_random_inputs generated_gpu_kernels_validate_and_are_shared_by_datasets \
  programs_that_need_f64_are_named_on_the_gpu posteriors_on_the_gpu_match_their_references \
  > "$OUT/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^test |test result|panicked" "$OUT/tests.log"
fi

fx=tests/fixtures/posteriordb
if part pdb; then
el "posteriordb"
for d in "$fx"/*/; do
  name=$(basename "$d")
  for backend in gpu cpu; do
    [ "$(budget 60)" -lt 20 ] && break 2
    s=$(date +%s.%N)
    timeout "$(budget 60)" $B sample --stan "$d/model.stan" --data "$d/data.json" --chains 16 \
      --warmup 1000 --draws 1000 --backend $backend --no-plots --quiet --out "/tmp/pdb/$name-$backend" \
      > /tmp/pdb.err 2>&1
    rc=$?
    echo "== $name $backend rc=$rc seconds=$(awk "BEGIN{print $(date +%s.%N) - $s}")"
    [ $rc -ne 0 ] && tail -n 3 /tmp/pdb.err
    [ $backend = gpu ] && [ -f "/tmp/pdb/$name-gpu/summary.csv" ] && cat "/tmp/pdb/$name-gpu/summary.csv"
  done
done > "$OUT/pdb.txt" 2>&1
grep "^==" "$OUT/pdb.txt"
fi

if part bench; then
el "bench"
timeout "$(budget 150)" $B bench --json --quiet --reliable-chains 0 --no-sampler --study-datasets 0 \
  --em-sequences 0 --mdn-pairs 0 --chains 1024 --families mixglm --seconds 0.3 --stan-chains 4096 \
  > "$OUT/stan_bench.json" 2> /tmp/bench.err
echo "bench rc=$?"; tail -n 30 /tmp/bench.err
fi

if part es; then
el "eight schools 4096"
es=$fx/eight_schools-eight_schools_noncentered
/usr/bin/time -f "%e s wall %M KB" timeout "$(budget 60)" $B sample --stan $es/model.stan --data $es/data.json \
  --chains 4096 --warmup 1000 --draws 1000 --backend gpu --no-plots --out /tmp/es4096 2>&1 | tail -n 6
cp /tmp/es4096/summary.csv "$OUT/es4096.csv"
fi

if part numpyro; then
el "numpyro"
PYTHONUNBUFFERED=1 timeout "$(budget 120)" python3 benches/numpyro_eight_schools.py --platform gpu \
  --chains 4096 --json "$OUT/numpyro_es.json" 2>&1 | grep -v "^ \|^{\|^}" | tail -n 6
fi
el done
