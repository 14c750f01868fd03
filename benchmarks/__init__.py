"""Measurements of the course, outside the learner's package ``vae_course`` (not installed with it):
``benchmarks.benchmark`` (run by ``bash scripts/benchmark.sh``) and ``benchmarks.gemm``, the
machine's matrix-multiply reading that scripts/build_course.py records too. Run from the
repository root."""
