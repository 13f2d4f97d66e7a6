"""Federated fine-tuning of medxfer bundles with NVIDIA FLARE and MONAI's :class:`monai.fl.client.MonaiAlgo`.

``python -m common.federated simulate|export``: :mod:`common.federated.job` builds the job with NVFlare's FedAvg
recipe, :mod:`common.federated.site` is what runs at each hospital, :mod:`common.federated.strategies` says which
fine-tuning strategies mean the same thing across rounds, :mod:`common.federated.results` turns the rounds into the
experiment runner's ``results.csv`` and :mod:`common.federated.baselines` adds the local-only and pooled references.
Deployment steps: ``docs/federated.md``.
"""

from __future__ import annotations

__all__: list[str] = []
