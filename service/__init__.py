"""Compatibility alias of :mod:`bnncore_service`, the model service's package.

The service was the top-level package ``service`` until 0.2. ``service.main:app``
and ``python -m service`` keep working; new code imports ``bnncore_service``.
"""
