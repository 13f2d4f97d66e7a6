"""``python -m common.federated simulate|export``: federated fine-tuning of a bundle with NVFlare (issue 13).

Example:
    python -m common.federated simulate --bundle bundles/chest_xray_classification \\
        --sites site-1=data/h1/datalist.json,site-2=data/h2/datalist.json --rounds 5 --local-epochs 1
"""

from __future__ import annotations

import sys

from common.federated.cli import main

sys.exit(main())
