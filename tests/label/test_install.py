"""monailabel 0.8.5 co-installed with the pinned stack: it imports, and MONAI's metadata checks still bite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bundles.conftest import ALL_BUNDLES, BUNDLES, SCHEMA


def test_monailabel_server_imports_in_a_fresh_interpreter() -> None:
    """The .pth hook (installed by make) lets pydicom-seg 0.4.1 import under pydicom 3, before any medxfer code."""
    code = ("import sys; assert 'common' not in sys.modules, 'the hook imported common at start-up'; "
            "import monailabel, monailabel.app, pydicom, pydicom_seg, itk, jsonschema; "
            "print(monailabel.__version__, pydicom.__version__.split('.')[0], jsonschema.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["0.8.5", "3", "3.2.0"]


def test_compat_module_serves_pydicom_uids_only() -> None:
    import pydicom.uid

    from common.label import compat

    compat.install()
    compat.install()  # idempotent
    assert sum(type(f).__name__ == "_SopClassUidsFinder" for f in sys.meta_path) == 1
    from pydicom._storage_sopclass_uids import SegmentationStorage  # type: ignore[import-not-found]

    assert SegmentationStorage == pydicom.uid.SegmentationStorage
    import pydicom._storage_sopclass_uids as old  # type: ignore[import-not-found]

    with pytest.raises(AttributeError, match="no 'NotAUid'"):
        _ = old.NotAUid


def test_compat_writes_its_pth(tmp_path: Path) -> None:
    from common.label.compat import PTH_NAME, main

    assert main(["--site-dir", str(tmp_path)]) == 0
    line = (tmp_path / PTH_NAME).read_text()
    assert line.startswith("import ") and line.count("\n") == 1 and "common/label/compat.py" in line
    code = f"import sys; exec({line!r}); import pydicom._storage_sopclass_uids; print('common' in sys.modules)"
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=False,
                         env={"PYTHONPATH": ":".join(p for p in sys.path if p)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"  # the hook works without importing the common package


@pytest.mark.skipif(not SCHEMA.is_file(), reason="../shared/monai schema absent (it lies beside the repo in CI only)")
@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_verify_metadata_with_jsonschema_3_accepts_ours_and_rejects_broken(name: str, tmp_path: Path) -> None:
    from monai.bundle import verify_metadata

    meta = BUNDLES / name / "configs" / "metadata.json"
    verify_metadata(meta_file=str(meta), filepath=str(SCHEMA))
    broken = json.loads(meta.read_text())
    broken["network_data_format"]["inputs"]["image"]["num_channels"] = "three"
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="three.*not of type"):  # MONAI re-raises the ValidationError
        verify_metadata(meta_file=str(bad), filepath=str(SCHEMA))
