"""Pack and verify cost for the chest bundle with a DenseNet-121 checkpoint (about 28 MB), side by side.

Builds a copy of the chest bundle with a freshly initialised DenseNet-121 (224 px, 14 classes; the weights'
values do not change the cost) and its checkpoint card, then measures in one run (median of ``--repeats``):

- ``sha256``: a plain sha256 of the archive's bytes (the floor of any integrity check);
- ``parse``: every config through MONAI's config loader and the metadata against MONAI's schema (the other
  floor: no verification can skip reading what it verifies);
- ``pack``: :func:`common.sharing.pack.pack_bundle` with a signature (vendoring, provenance, manifest, zip);
- ``verify (integrity)``: what verify does first (:func:`common.sharing.archive_check.check_archive`): every
  entry checked, every file streamed once through sha256 against the manifest, the signature, plus the parse;
  nothing is written (what a receiving site pays to know it got the bytes that were signed);
- ``safe unpack``: what verify does next for the checks that read files (schema, logging, model, network);
- ``verify (full)``: :func:`common.sharing.verify.verify_bundle` with every check, including the model load and
  ``verify_net_in_out`` in a subprocess (which imports torch and MONAI and builds the network).

Issue target: verify costs under 2x a plain sha256 of the same bytes plus the parse. The integrity path is
what that target is about; the full verify adds the model load and ``verify_net_in_out`` (a subprocess that
imports torch and MONAI and builds the network: seconds, whatever the archive), reported beside it. Pack stores
weights uncompressed (deflate saves ~10 % on float tensors and inflating them would dominate verification).

    python benchmarks/sharing.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import torch
from monai.bundle import ConfigParser

from common.networks import build_classifier
from common.networks.checkpoint_card import make_card, write_card
from common.sharing.archive_check import check_archive
from common.sharing.manifest import file_sha256
from common.sharing.pack import pack_bundle
from common.sharing.safezip import safe_extract
from common.sharing.signing import keygen
from common.sharing.verify import SCHEMA, verify_bundle

REPO = Path(__file__).resolve().parents[1]
CHEST = "chest_xray_classification"


def _median(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _trained_copy(root: Path) -> Path:
    """The chest bundle with a DenseNet-121 model.pt and its card, as a training run leaves it."""
    bundle = root / CHEST
    for part in ("configs", "docs"):
        shutil.copytree(REPO / "bundles" / CHEST / part, bundle / part)
    shutil.copy(REPO / "bundles" / CHEST / "LICENSE", bundle / "LICENSE")
    config = json.loads((bundle / "configs" / "train.json").read_text())
    (bundle / "models").mkdir()
    torch.manual_seed(0)
    torch.save(build_classifier("densenet121", len(config["class_names"])).state_dict(), bundle / "models" / "model.pt")
    preprocessing = {k: config[k] for k in ("image_size", "use_clahe", "clahe_clip_limit", "clahe_tile_grid_size",
                                            "clahe_bit_depth", "imagenet_mean", "imagenet_std") if k in config}
    write_card(bundle / "models" / "model.json", make_card(bundle / "models" / "model.pt", arch="densenet121",
                                                          class_names=config["class_names"],
                                                          preprocessing=preprocessing))
    return bundle


def _parse(folder: Path) -> None:
    """What any verification of a bundle parses: every config through MONAI's loader, the metadata against the
    schema (the shipped copy, draft-7 keywords as MONAI's verify_metadata validates)."""
    for file in sorted((folder / "configs").rglob("*.json")):
        ConfigParser.load_config_file(str(file))
    metadata = json.loads((folder / "configs" / "metadata.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8"))).validate(metadata)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table; exit 1 when the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats per measurement (default 3)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = _trained_copy(root)
        private, public = keygen(root / "keys")
        trusted = root / "trusted"
        trusted.mkdir()
        shutil.copy(public, trusted / public.name)
        counter = iter(range(1, 1000))

        def pack() -> Path:
            return pack_bundle(bundle, root / "out", version=f"1.0.{next(counter)}", changelog="benchmark",
                               sign_key=private, record=False)

        pack_s = _median(pack, args.repeats)
        archive = pack()
        size = archive.stat().st_size
        unpacked = safe_extract(archive, root / "parsed")
        sha_s = _median(lambda: file_sha256(archive), args.repeats)
        parse_s = _median(lambda: _parse(unpacked), args.repeats)

        def integrity() -> None:  # what verify does first: the archive checked in one read, nothing written
            check_archive(archive, trusted)
            _parse(unpacked)

        def unpack() -> None:  # what verify does next, for the checks that read files (hashing as it writes)
            with tempfile.TemporaryDirectory(dir=root) as where:
                safe_extract(archive, where, digests={})

        integrity_s = _median(integrity, args.repeats)
        unpack_s = _median(unpack, args.repeats)
        full_s = _median(lambda: verify_bundle(archive, trusted_keys=trusted), max(1, args.repeats // 2))
        report = verify_bundle(archive, trusted_keys=trusted)
    budget = 2 * sha_s + parse_s
    rows = [("sha256 of the archive", sha_s), ("parse configs + metadata", parse_s), ("pack (signed)", pack_s),
            ("verify (integrity: entries, every sha256, signature, parse)", integrity_s),
            ("safe unpack (for the file checks)", unpack_s), ("verify (full: + model, audit, net_in_out)", full_s)]
    sys.stdout.write(f"chest bundle, DenseNet-121 checkpoint: archive {size / 2**20:.1f} MiB, "
                     f"verify {'OK' if report.ok else 'FAILED'}\n\n| step | seconds |\n|---|---|\n")
    for name, seconds in rows:
        sys.stdout.write(f"| {name} | {seconds:.3f} |\n")
    verdict = "met" if integrity_s <= budget else "MISSED"
    sys.stdout.write(f"\ntarget: verify (integrity) {integrity_s:.3f} s <= 2 x sha256 + parse = {budget:.3f} s: "
                     f"{verdict} (ratio {integrity_s / (sha_s + parse_s):.2f} x of sha256 + parse)\n")
    return 0 if integrity_s <= budget and report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
