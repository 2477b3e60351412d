#!/usr/bin/env bash
# Builds every sinter program (CLI, tests, benchmarks; CUDA for one architecture, Vulkan)
# on this machine and packs them for a GPU machine that has the CUDA driver and toolkit
# but not the Debian libraries or the time to build: stripped executables (xz, a few MB),
# the shared libraries they and OpenBLAS/the Vulkan loader need, and the source path the
# binaries were built at (tests open files by absolute path). scripts/gpu-check.sh with
# PREBUILT=1 unpacks it there and runs the same checks without building.
#
#   scripts/gpu-pack.sh                 # build-h100, sm_90, into .gpubin/
#   BUILD=build-x ARCH=80 scripts/gpu-pack.sh
#   BINS="bench_step test_backend_ops" scripts/gpu-pack.sh   # only these programs
#
# The whole pack is about 60 MB, close to what a device call may carry (64 MiB with the
# working tree); BINS packs only the named programs and the libraries they need, for a
# call that runs them directly (gpu-check.sh with SKIP_TESTS=1 SKIP_BENCH=1 SKIP_APP=1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${BUILD:-build-h100}
arch=${ARCH:-90}
pack=$root/.gpubin

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" -DSINTER_MPI=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null

exes=()
for f in "$build"/*; do
  [ -f "$f" ] && [ -x "$f" ] && file -b "$f" | grep -q ELF && exes+=("$f")
done
if [ -n "${BINS:-}" ]; then
  keep=()
  for b in $BINS; do
    [ -x "$build/$b" ] || { echo "gpu-pack: BINS names $b, which $build does not have" >&2; exit 1; }
    keep+=("$build/$b")
  done
  exes=("${keep[@]}")
fi
rm -rf "$pack" # only now: a bad BINS leaves the last pack as it was
mkdir -p "$pack/bin" "$pack/lib"
for f in "${exes[@]}"; do strip -o "$pack/bin/$(basename "$f")" "$f"; done
cp "$build/CTestTestfile.cmake" "$pack/bin/"
tar -C "$pack/bin" -cf - . | xz -T0 -6 >"$pack/bin.tar.xz"
rm -rf "$pack/bin"

# libraries outside glibc, libstdc++ and CUDA (the GPU machine has newer ones of those)
skip='linux-vdso|ld-linux|/libc\.so|/libm\.so|libpthread|libdl\.so|librt\.so|libstdc\+\+|libgcc_s|cuda|libcublas|libnccl|libcudnn|libcufft'
blas=$(grep -E '^OPENBLAS_SO' "$build/CMakeCache.txt" | cut -d= -f2 || true)
[ -n "$blas" ] || blas=/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0
extra=("$blas" "$(ldconfig -p | awk '/libvulkan.so.1 /{p=$NF} END{print p}')")
{
  for f in "${exes[@]}" "${extra[@]}"; do [ -n "$f" ] && ldd "$f" 2>/dev/null || true; done
} | awk '/=> \//{print $3}' | sort -u | { grep -vE "$skip" || true; } | while read -r so; do cp -L "$so" "$pack/lib/"; done
for f in "${extra[@]}"; do [ -n "$f" ] && cp -L "$f" "$pack/lib/"; done
tar -C "$pack/lib" -cf - . | xz -T0 -6 >"$pack/lib.tar.xz"
rm -rf "$pack/lib"
echo "$root" >"$pack/srcdir"
echo "$build" >"$pack/build"
du -sh "$pack"/*
