#!/usr/bin/env bash
# Wheels that scripts/gpu_check.sh needs on the device machine, which has PyTorch but not Hydra, and
# no network: downloaded here into .whl/ (ignored by git), carried with the call (`carry: [".whl"]`).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
mkdir -p .whl
for pkg in hydra-core==1.3.2 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 tqdm; do
  python3 -m pip download --no-deps -q -d .whl "$pkg" \
    --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 --platform any --only-binary=:all: \
  || python3 -m pip download --no-deps -q -d .whl "$pkg"  # antlr4's runtime ships as an sdist only
done
ls -la .whl
