# Sourced ON the device machine by run.sh and stan.sh, in the project's root: the Vulkan
# loader from .gl/, the binaries from .gpu-carry/carry.tar.gz into /tmp/c (B is gpsamp),
# the NVIDIA driver when the loader does not find it, and $OUT/devices.txt.
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export XDG_RUNTIME_DIR=/tmp/xdg; mkdir -p $XDG_RUNTIME_DIR; chmod 700 $XDG_RUNTIME_DIR
mkdir -p /tmp/c && tar xzf .gpu-carry/carry.tar.gz -C /tmp/c
B=/tmp/c/gpsamp
nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if ! $B devices 2>&1 | grep -qi nvidia && [ -f "$nv" ]; then
  export VK_DRIVER_FILES=$nv
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
{ $B devices 2>&1; nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.total,driver_version --format=csv 2>&1; nproc; lscpu | grep -i "model name"; } | tee "$OUT/devices.txt"
