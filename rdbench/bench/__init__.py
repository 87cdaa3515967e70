"""Benchmarks: each measures, in one run, rdbench's throughput beside a baseline and prints the ratio.

Speed targets live here, never in unit tests: the machines are shared and noisy, so a
benchmark times both sides in the same process with the one interleaved loop of
:mod:`.timing`. One module per system (:mod:`.rd`, :mod:`.lstm`, :mod:`.ddpm`); the
``rdbench bench`` commands print what they report.
"""
