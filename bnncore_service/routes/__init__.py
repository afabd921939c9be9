"""HTTP routes: models (registry), reports (dry runs), health, server metadata,
weights (upload), inference."""
