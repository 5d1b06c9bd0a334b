"""The benchmark harness: suites of metrics x datasets -> per-unit JSON results -> tables.

- :mod:`~shamisa_bench.harness.registry`: the YAML registry of datasets, metrics, protocols
  and suites.
- :mod:`~shamisa_bench.harness.data`: dataset readers (official and pyiqa layouts), splits,
  the embedded demo set, downloads.
- :mod:`~shamisa_bench.harness.adapters`: one adapter per metric kind (pyiqa scores,
  feature probes) and the cached pass over a dataset.
- :mod:`~shamisa_bench.harness.cache`: the on-disk cache of per-image outputs.
- :mod:`~shamisa_bench.harness.protocols`: intra- and cross-dataset evaluation.
- :mod:`~shamisa_bench.harness.results`: the unit JSON schema, storage and leaderboard tables.
- :mod:`~shamisa_bench.harness.run`: :func:`~shamisa_bench.harness.run.run_suite`, which ties
  them together; :mod:`~shamisa_bench.harness.cli`: ``run``, ``report``, ``perf ridge|run``.

This ``__init__`` imports nothing, so that reading a dataset (``harness.data``, e.g. for the
pretraining validation probe) does not load the whole harness.
"""
