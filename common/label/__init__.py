"""MONAI Label integration: serve, annotate, train and rank medxfer bundles (apps/monailabel uses these)."""
