"""Helpers of bench/e2e_bench.py: the simulated day, the scale run, the analysis, the plots."""
