"""``python -m service``, kept for command lines written before 0.2."""

from bnncore_service.server import main

main()
