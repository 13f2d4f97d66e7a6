"""MONAI Label app for medxfer: every bundle under bundles/ served, trained and ranked from a live server.

Start it with ``make label`` or ``python -m common.label serve --studies DIR`` (see docs/monailabel.md); plain
``monailabel start_server --app apps/monailabel --studies DIR`` works too once ``python -m common.label.compat``
has installed the pydicom-seg import hook (``make`` does). The tasks live in ``common/label`` and are tested there.
"""

from common.label.app import MedxferApp

__all__ = ["MedxferApp"]
