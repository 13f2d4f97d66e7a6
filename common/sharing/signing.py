"""Ed25519 keys and detached signatures over a bundle's ``manifest.json``, through ``cryptography``.

``keygen`` writes ``<name>.key`` (PKCS#8 PEM private key, mode 0600; keep it at the signing site) and
``<name>.pub`` (SubjectPublicKeyInfo PEM; hand it to receiving sites, who put it in their trusted-keys folder).
The signature file ``manifest.sig`` is JSON: ``{"algorithm": "ed25519", "key_id", "signature"}`` with the
signature base64 over the exact bytes of ``manifest.json``. A key id is the first 16 hex digits of the sha256
of the raw 32-byte public key.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common.io import atomic_save, atomic_write_json, make_directory
from common.sharing.errors import SignatureError
from common.sharing.manifest import MANIFEST, SIGNATURE

__all__ = ["key_id", "keygen", "load_private_key", "load_trusted_keys", "sign_manifest", "verify_manifest_bytes",
           "verify_signature"]


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the sha256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def keygen(output: str | os.PathLike, name: str = "medxfer") -> tuple[Path, Path]:
    """Write a new Ed25519 key pair as ``output/<name>.key`` and ``output/<name>.pub``; refuse to overwrite.

    Returns:
        The private and the public key paths.

    Raises:
        SignatureError: either file exists already (a key is never replaced silently).
    """
    folder = make_directory(output)
    private_path, public_path = folder / f"{name}.key", folder / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise SignatureError(f"{path}: exists already; keygen never overwrites a key (choose another --name)")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)

    def write_private(tmp: Path) -> None:
        tmp.write_bytes(private_pem)
        tmp.chmod(0o600)

    atomic_save(private_path, write_private)
    atomic_save(public_path, lambda tmp: tmp.write_bytes(public_pem))
    private_path.chmod(0o600)
    return private_path, public_path


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file at ``path``.

    Raises:
        SignatureError: missing, unreadable, or not an Ed25519 private key.
    """
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise SignatureError(f"{path}: signing key not found (create one: python -m common.sharing keygen)") from exc
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: expected an Ed25519 private key, found {type(key).__name__}")
    return key


def load_trusted_keys(folder: str | os.PathLike) -> dict[str, Ed25519PublicKey]:
    """Every Ed25519 public key (``*.pub``, ``*.pem``) in ``folder`` by key id.

    Raises:
        SignatureError: the folder is missing or holds no Ed25519 public key, or a key file does not parse.
    """
    root = Path(folder)
    if not root.is_dir():
        raise SignatureError(f"{root}: trusted-keys folder not found")
    keys: dict[str, Ed25519PublicKey] = {}
    for path in sorted([*root.glob("*.pub"), *root.glob("*.pem")]):
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except ValueError as exc:
            raise SignatureError(f"{path}: not a PEM public key ({exc})") from exc
        if isinstance(key, Ed25519PublicKey):
            keys[key_id(key)] = key
    if not keys:
        raise SignatureError(f"{root}: no Ed25519 public key (*.pub or *.pem) in the trusted-keys folder")
    return keys


def sign_manifest(folder: str | os.PathLike, private_key: str | os.PathLike) -> Path:
    """Write ``folder/manifest.sig``, a detached Ed25519 signature over ``folder/manifest.json``; returns its path."""
    root = Path(folder)
    key = load_private_key(private_key)
    signature = key.sign((root / MANIFEST).read_bytes())
    return atomic_write_json(root / SIGNATURE, {"algorithm": "ed25519", "key_id": key_id(key.public_key()),
                                                "signature": base64.b64encode(signature).decode("ascii")})


def verify_signature(folder: str | os.PathLike, trusted_keys: str | os.PathLike) -> str:
    """Check ``folder/manifest.sig`` over ``folder/manifest.json`` with a key from ``trusted_keys``; returns its id.

    Raises:
        SignatureError: unsigned, malformed signature file, key not trusted, or signature does not match.
    """
    root = Path(folder)
    sig_path = root / SIGNATURE
    if not sig_path.is_file():
        load_trusted_keys(trusted_keys)  # a missing keys folder is named first
        raise SignatureError(f"{SIGNATURE}: missing; the bundle is not signed (pack --sign KEY signs it)")
    return verify_manifest_bytes((root / MANIFEST).read_bytes(), sig_path.read_bytes(), trusted_keys)


def verify_manifest_bytes(manifest: bytes, signature_file: bytes, trusted_keys: str | os.PathLike) -> str:
    """Check the ``manifest.sig`` content ``signature_file`` over the ``manifest.json`` bytes ``manifest`` with a key
    from ``trusted_keys``; returns its id (see :func:`verify_signature`)."""
    keys = load_trusted_keys(trusted_keys)
    try:
        record = json.loads(signature_file.decode("utf-8"))
        signature = base64.b64decode(record["signature"], validate=True)
        kid = str(record["key_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SignatureError(f"{SIGNATURE}: malformed, expected JSON with key_id and a base64 signature") from exc
    if record.get("algorithm") != "ed25519":
        raise SignatureError(f"{SIGNATURE}: algorithm {record.get('algorithm')!r}, expected 'ed25519'")
    if kid not in keys:
        raise SignatureError(f"{SIGNATURE}: signed by key {kid}, which is not among the trusted keys in {trusted_keys}")
    try:
        keys[kid].verify(signature, manifest)
    except InvalidSignature as exc:
        raise SignatureError(f"{SIGNATURE}: does not match {MANIFEST} (altered after signing, or forged)") from exc
    return kid


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m common.sharing keygen``."""
    parser.add_argument("--output", required=True, type=Path, help="folder for <name>.key and <name>.pub")
    parser.add_argument("--name", default="medxfer", help="file name stem of the pair (default medxfer)")


def run(args: argparse.Namespace) -> int:
    """``keygen``: write the pair, say where, and which file to hand to receiving sites."""
    private_path, public_path = keygen(args.output, args.name)
    public_key = serialization.load_pem_public_key(public_path.read_bytes())
    sys.stdout.write(f"wrote {private_path} (private: keep it here, mode 0600) and {public_path} "
                     f"(public, key id {key_id(public_key)}: give it to receiving sites' trusted-keys folder)\n")
    return 0
