"""Pydantic models of the service: the definition language, reports and errors."""
