"""``python -m bnncore_service``: the server runner (:mod:`bnncore_service.server`)."""

import gc
import os

if os.environ.get("BNN_ROLE", "").strip().lower() == "inference":
    # The runner's own imports too: server.startup_objects_frozen turns the
    # cyclic garbage collector back on once the replica's app is built.
    gc.disable()

from bnncore_service.server import main

main()
