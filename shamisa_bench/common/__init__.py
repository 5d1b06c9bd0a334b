"""Shared building blocks with no knowledge of SHAMISA: atomic file writers, progress bars,
the ``--device`` check, provenance (versions, git state), image reading, correlations and
the split primitive.

Every other subpackage may import from here; nothing here imports the rest of the package
(only ``shamisa_bench.__version__``).
"""
