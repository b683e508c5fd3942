"""``python -m slo_opt.cli`` = ``slo-opt``."""

from slo_opt.cli import main

raise SystemExit(main())
