#!/usr/bin/env bash
# What `make test-arm` needs on a Debian 12 x86-64 machine: the aarch64 cross
# compiler, qemu-user to run its binaries, and arm64 builds of the two
# libraries the kernel tests link (cmocka; OpenBLAS for ops.c's GEMMs),
# through Debian's multiarch. Installs only what is missing; sudo where not root.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
updated=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "setup-arm: adding the arm64 architecture (multiarch)" >&2
    $SUDO dpkg --add-architecture arm64
    $SUDO apt-get update -q
    updated=1
fi
PKGS=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libcmocka-dev:arm64 libopenblas-dev:arm64)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-arm: installing ${missing[*]}" >&2
    [ "$updated" = 1 ] || $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
