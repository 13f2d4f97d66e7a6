"""The NVFlare client script of a medxfer federated job (run by NVFlare's ScriptRunner at each site).

It only forwards its arguments to :func:`common.federated.site.run_site`: the logic is importable and tested,
and the job folder carries no bundle code (each site runs its own installed, reviewed copy of medxfer).
"""

from __future__ import annotations

import sys

from common.federated.site import run_site

if __name__ == "__main__":
    run_site(sys.argv[1:])
