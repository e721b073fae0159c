"""Signed manifests: a replica unpickles only what a holder of the signing key published.

A version's manifest names the sha256 of each pickle. The publisher signs the manifest
(HMAC-SHA256 over its canonical JSON, version id and digests included) with MODEL_SIGNING_KEY, a
secret the worker and the algorithm processes hold and the model volume (or bucket) never does;
the loader checks the signature, in constant time, before it trusts any digest. Whoever can write
the volume can still delete or break a version, but cannot make a replica unpickle bytes of their
choosing: a changed pickle fails its digest, a changed or re-made manifest fails its signature.

Rotation: several keys may be held; the first signs, any of them verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SIGNATURE_FIELD = "signature"
SIGNATURE_SCHEME = "hmac-sha256"
# Why a load was refused (the algorithm service counts refusals by these).
UNSIGNED = "unsigned"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"


class ManifestNotTrusted(Exception):
    """A manifest is unsigned, or no key held here made its signature; `reason` says which."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def canonical_json(manifest: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the manifest without its signature, keys sorted, compact."""
    body = {key: value for key, value in manifest.items() if key != SIGNATURE_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(key: bytes) -> str:
    """A short public name for a key, so a refusal can say which key signed (not the key)."""
    return hmac.new(key, b"textclf model signing key id", hashlib.sha256).hexdigest()[:12]


@dataclass(frozen=True)
class SigningKeys:
    """The keys held by this process: the first signs, any verifies."""

    keys: tuple[bytes, ...] = field(repr=False)  # never in a log line

    @classmethod
    def from_secrets(cls, secrets: Iterable[str]) -> SigningKeys:
        keys = tuple(secret.encode() for secret in secrets)
        if not keys or not all(keys):
            raise ValueError("no model signing key given")
        return cls(keys)

    def sign(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The manifest with a signature by the first key (any earlier signature replaced)."""
        key = self.keys[0]
        signature = {
            "scheme": SIGNATURE_SCHEME,
            "key_id": key_id(key),
            "hmac": _mac(key, manifest),
        }
        return {**manifest, SIGNATURE_FIELD: signature}

    def verify(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The manifest without its signature, if a key held here made it (ManifestNotTrusted)."""
        signature = manifest.get(SIGNATURE_FIELD)
        if signature is None:
            raise ManifestNotTrusted(
                "the manifest is not signed (published before signed manifests, or written by "
                "hand); refusing to load it: sign the versions the registry recorded with "
                "`python -m worker.sign_versions`, or train a new version",
                reason=UNSIGNED,
            )
        if (
            not isinstance(signature, dict)
            or signature.get("scheme") != SIGNATURE_SCHEME
            or not isinstance(signature.get("hmac"), str)
        ):
            raise ManifestNotTrusted(
                f"the manifest's signature is not {SIGNATURE_SCHEME}; refusing to load it",
                reason=BAD_SIGNATURE,
            )
        claimed = signature["hmac"]
        # Every key is tried, and compared in constant time: no early answer to time.
        matches = [hmac.compare_digest(_mac(key, manifest), claimed) for key in self.keys]
        if any(matches):
            return {key: value for key, value in manifest.items() if key != SIGNATURE_FIELD}
        if signature.get("key_id") not in {key_id(key) for key in self.keys}:
            raise ManifestNotTrusted(
                f"the manifest is signed with key {signature.get('key_id')!r}, not one of this "
                "process's MODEL_SIGNING_KEY; refusing to load it",
                reason=UNKNOWN_KEY,
            )
        raise ManifestNotTrusted(
            "the manifest's signature does not match its content (changed after signing); "
            "refusing to load it",
            reason=BAD_SIGNATURE,
        )


def _mac(key: bytes, manifest: dict[str, Any]) -> str:
    return hmac.new(key, canonical_json(manifest), hashlib.sha256).hexdigest()
