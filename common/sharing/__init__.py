"""Sharing bundles between sites: pack, sign, verify, audit, fetch, run and evaluate (``python -m common.sharing``).

A MONAI bundle is code (every ``$`` expression and ``_target_`` runs on ``monai.bundle run``), so a receiving
site checks what it received before anything runs:

- :mod:`common.sharing.manifest`: sha256 + size of every file, the thing a signature covers.
- :mod:`common.sharing.signing`: Ed25519 keys and detached signatures (``cryptography``).
- :mod:`common.sharing.safezip`: unpacking with zip-slip, absolute-path, symlink, size and file-count checks.
- :mod:`common.sharing.verify`: every check of a received bundle, reported as text and JSON.
- :mod:`common.sharing.audit`: every ``$`` expression, ``_target_`` and ``imports`` entry, classified.
- :mod:`common.sharing.pack`: a model-zoo-layout archive with provenance, version bump and vendored code.
- :mod:`common.sharing.fetch`: from a folder registry, an http(s) URL or the Hugging Face Hub, then verify.
- :mod:`common.sharing.registry`: a folder of archives with an ``index.json``.
- :mod:`common.sharing.run` / :mod:`common.sharing.evaluate`: run a received bundle; evaluate it on this site's data
  (:mod:`common.sharing.site`: the code-free ``site.json``).
- :mod:`common.sharing.zoo`: the model-zoo CI checks, offline.

Exit codes of every verb: 0 success; 1 the bundle failed verification or the audit flagged something;
2 a usage or input error (one line on stderr).
"""

from __future__ import annotations

__all__: list[str] = []
