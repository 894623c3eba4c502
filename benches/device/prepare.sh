#!/usr/bin/env bash
# Run HERE, in the project's root, before one `device` run on a machine with a real GPU:
# builds the release binary and the GPU test binaries, strips them and packs them into
# .gpu-carry/carry.tar.gz (the test binaries alone are over the 64 MiB a run may carry
# unpacked), copies run.sh beside it, and downloads the Vulkan loader packages into .gl/.
# Then: device run, carry [".gpu-carry", ".gl"], command `bash .gpu-carry/run.sh`, about
# 330 s on an H100 (timeout_s 470).
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
for p in /.gpu-carry/ /.gl/; do
  grep -qx "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude
done
rm -rf .gpu-carry && mkdir -p .gpu-carry/pack/tests
cargo build --release --quiet
strip -o .gpu-carry/pack/gpsamp target/release/gpsamp
# The test files that use the GPU and need no `gpsamp` binary at the build's path.
for t in ${GPU_TESTS:-custom_family eiv gpu hmc_twin hmm_em hmm_hmc hmm_kernels mdn sampler}; do
  exe=$(cargo test --release --no-run --test "$t" --message-format=json 2>/dev/null \
        | grep -o '"executable":"[^"]*"' | grep "/deps/$t-" | tail -n 1 | cut -d'"' -f4)
  [ -n "$exe" ] && strip -o ".gpu-carry/pack/tests/$t" "$exe"
done
tar czf .gpu-carry/carry.tar.gz -C .gpu-carry/pack . && rm -rf .gpu-carry/pack
cp "$(dirname "${BASH_SOURCE[0]}")"/{run,stan}.sh .gpu-carry/
# The checkout's path, which the test binaries and the bench have built in (stan.sh).
pwd -P > .gpu-carry/root
if [ ! -d .gl ] || ! ls .gl/*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update >/dev/null
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
fi
du -sh .gpu-carry .gl
echo "now: device run, carry [\".gpu-carry\", \".gl\"], command: bash .gpu-carry/run.sh"
