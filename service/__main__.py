"""``python -m service``: the server runner (:mod:`service.server`)."""

from service.server import main

main()
