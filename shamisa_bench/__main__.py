"""`python -m shamisa_bench` is the same as the `shamisa-bench` console script."""

from shamisa_bench.cli import main

raise SystemExit(main())
