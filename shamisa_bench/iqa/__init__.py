"""SHAMISA as a quality metric: the ridge head on frozen encoder features, and pyiqa.

- :mod:`~shamisa_bench.iqa.head`: the head file format, its fit, the shared preprocessing.
- :mod:`~shamisa_bench.iqa.ridge`: closed-form ridge regression over a path of alphas.
- :mod:`~shamisa_bench.iqa.weights`: where the metric's encoder export and head are found.
- :mod:`~shamisa_bench.iqa.plugin`: registration with pyiqa (``pyiqa.create_metric('shamisa')``);
  the arch itself is :class:`shamisa_bench.archs.shamisa_arch.SHAMISA`.
- :mod:`~shamisa_bench.iqa.cli`: ``fit-head`` and ``perf metric``.

This ``__init__`` imports nothing: ``import shamisa_bench`` loads
:mod:`~shamisa_bench.iqa.plugin` and must stay free of torch and pyiqa.
"""
