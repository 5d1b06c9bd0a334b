"""Shared building blocks with no knowledge of SHAMISA: atomic file writers, progress bars,
device checks, image reading and score correlations.

Every other subpackage may import from here; nothing here imports the rest of the package.
"""
