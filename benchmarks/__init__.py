"""The benchmarks: each module writes ``results/bench/<name>.{json,md}`` and runs as ``python -m benchmarks.<module>``.

``epoch_time`` (lenet300_100, mlp_4096: masked vs sparse execution), ``layers``, ``conv``, ``threads``,
``lenet5_caffe``, ``export``, ``truly_sparse``, and ``throughput`` (JSON lines, no file). ``make bench`` runs
the ones that write files. What they share, the machine line, interleaved best-of-N timing and the
markdown header, is ``benchmarks.common``.
"""
