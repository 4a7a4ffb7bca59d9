#!/usr/bin/env bash
# System libraries sparselmm needs: CHOLMOD (SuiteSparse 5.x headers, for
# building scikit-sparse 0.4), OpenBLAS (CHOLMOD runs ~3x faster than on the
# reference BLAS), a C compiler. Installs what is missing with apt-get when
# run as root; otherwise says what to install and stops.
set -euo pipefail
PKGS=(libsuitesparse-dev libopenblas0-pthread build-essential pkg-config)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "sparselmm needs: SuiteSparse 5.x development files (CHOLMOD), OpenBLAS, a C compiler." >&2
    echo "This is not a Debian/Ubuntu system: install them with your package manager." >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "Missing system packages: ${missing[*]}" >&2
        echo "Run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi
echo "Installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
