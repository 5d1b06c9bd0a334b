"""Results: the per-unit JSON schema, atomic storage, provenance and leaderboard tables."""

from shamisa_bench.common.provenance import collect_provenance, git_state
from shamisa_bench.harness.results.schema import (
    SCHEMA_VERSION,
    STATUSES,
    clean_json,
    unit_token,
    validate_unit,
)
from shamisa_bench.harness.results.store import (
    iter_units,
    load_unit,
    unit_path,
    write_unit,
)
from shamisa_bench.harness.results.tables import (
    Cell,
    Leaderboard,
    build_leaderboard,
    render_console,
    render_markdown,
    write_tables,
)

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "Cell",
    "Leaderboard",
    "build_leaderboard",
    "clean_json",
    "collect_provenance",
    "git_state",
    "iter_units",
    "load_unit",
    "render_console",
    "render_markdown",
    "unit_path",
    "unit_token",
    "validate_unit",
    "write_tables",
    "write_unit",
]
