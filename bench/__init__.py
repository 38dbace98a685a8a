"""Benchmarks of hostplane: print figures beside same-run baselines (never timed asserts).

Run ``python -m bench`` (small scale, a few minutes) or ``python -m bench --scale full``.
"""
