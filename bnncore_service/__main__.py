"""``python -m bnncore_service``: the server runner (:mod:`bnncore_service.server`)."""

from bnncore_service.server import main

main()
