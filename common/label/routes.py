"""A check in front of MONAI Label's ``POST /train/{model}``: a bad request is a 400 before any job starts.

MONAI Label starts training as a background subprocess and answers at once, so an error inside the job (too few
labels, an unknown strategy, ImageNet weights missing offline) would only show in ``GET /train`` status. This
route runs :meth:`BundleTrainTask.check` first, in the server, and then hands the request to MONAI Label's own
handler unchanged (same authorisation dependency, same parameters). It is placed ahead of MONAI Label's route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException
from fastapi.routing import APIRoute

if TYPE_CHECKING:
    from common.label.app import MedxferApp

__all__ = ["install_train_check"]


def install_train_check(instance: MedxferApp) -> None:
    """Put the checking ``POST /train/{model}`` route first in MONAI Label's FastAPI app (once)."""
    from monailabel.app import app
    from monailabel.config import settings
    from monailabel.endpoints.train import run_model
    from monailabel.endpoints.user.auth import RBAC, User

    path = f"{settings.MONAI_LABEL_API_STR}/train/{{model}}"
    admin = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))  # the same authorisation as MONAI Label's route
    if any(getattr(route, "name", "") == "medxfer_train_check" for route in app.router.routes):
        return

    async def medxfer_train_check(
        model: str,
        params: dict | None = None,
        run_sync: bool | None = False,
        enqueue: bool | None = False,
        user: User = admin,
    ) -> Any:
        task = instance.trainer(model)
        if task is None:
            raise HTTPException(status_code=404, detail=f"no model {model!r}; served: {', '.join(instance.bundles)}")
        task.check(dict(params or {}), instance.datastore())
        return run_model(model, params, run_sync, enqueue)

    route = APIRoute(path, medxfer_train_check, methods=["POST"], name="medxfer_train_check",
                     summary="Check the request, then run MONAI Label's training task for a model")
    app.router.routes.insert(0, route)
