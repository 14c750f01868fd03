#!/usr/bin/env bash
# The benchmark: the course's fit() against a pytorch/examples-style VAE loop, side by side in
# one process; writes build/benchmark/benchmark.json, benchmark.md and benchmark.png.
#   bash scripts/benchmark.sh                # a few minutes on a 2-core CPU
#   bash scripts/benchmark.sh --quick        # a smoke run (seconds)
#   bash scripts/benchmark.sh --course run   # also execute the course in fast and full mode (~10 min)
#   bash scripts/benchmark.sh --burda        # Burda et al. 2015's VAE on full MNIST, IWAE k=5000
#   bash scripts/benchmark.sh --help         # every option
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
exec .venv/bin/python -m benchmarks.benchmark "$@"  # benchmarks/ is not part of the installed package
