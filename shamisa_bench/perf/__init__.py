"""Speed benchmarks (``shamisa-bench perf ...``): each prints JSON.

- :mod:`~shamisa_bench.perf.engine`: step generation and the cost of each distortion type.
- :mod:`~shamisa_bench.perf.pretrain`: pretraining steps/s and the data-wait fraction.
- :mod:`~shamisa_bench.perf.cli`: the ``perf`` command and all its targets (the encoder,
  metric, ridge and run benchmarks live with the code they time).
"""
