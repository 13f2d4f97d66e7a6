"""Fixtures the explanation tests share with the bundle tests."""

from tests.bundles.conftest import mammo_dataset  # noqa: F401  (a session fixture, requested by name)
