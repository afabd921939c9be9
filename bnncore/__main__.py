"""``python -m bnncore``: the command line (:mod:`bnncore.cli`)."""

from bnncore.cli import main

raise SystemExit(main())
