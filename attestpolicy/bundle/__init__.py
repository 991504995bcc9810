"""OPA bundles: build, sign, verify and load them in OPA's own file format.

A bundle is a gzipped tar holding ``/.manifest`` (``revision``, ``roots``,
``rego_version``), ``.rego`` modules, ``data.json`` files whose directory is their
path in ``data``, and optionally ``/.signatures.json``: ``{"signatures": [JWT]}``
whose payload lists every other file with its digest. JSON files are hashed over
OPA's canonical form, other files over their raw bytes. This mirrors
``bundle/hash.go`` and ``bundle/verify.go`` in OPA, so OPA loads what
:func:`build_bundle` writes and :func:`load_bundle` loads what ``opa build`` writes.

The data flows one way through private modules: ``_format`` (file names, manifest,
roots, canonical JSON, file digests), ``_signing`` (the ``.signatures.json`` JWT),
``_loading`` (reading a tar.gz or directory within :class:`BundleLimits`, then checking
and assembling a :class:`LoadedBundle`) and ``_building`` (:func:`build_bundle`,
:func:`write_config_bundle`). Keys are loaded and checked by :mod:`attestpolicy._keys`.
"""

from __future__ import annotations

from attestpolicy._keys import PrivateKey, PublicKey
from attestpolicy.bundle._building import build_bundle, write_config_bundle
from attestpolicy.bundle._format import (
    BUNDLE_ROOTS,
    CONFIG_ROOTS,
    SIGNATURE_CODE,
    BundleManifest,
    canonical_json,
    file_digest,
)
from attestpolicy.bundle._loading import DEFAULT_LIMITS, BundleLimits, LoadedBundle, load_bundle
from attestpolicy.bundle._signing import SignedFile, verify_signature_token

__all__ = [
    "BUNDLE_ROOTS",
    "CONFIG_ROOTS",
    "DEFAULT_LIMITS",
    "SIGNATURE_CODE",
    "BundleLimits",
    "BundleManifest",
    "LoadedBundle",
    "PrivateKey",
    "PublicKey",
    "SignedFile",
    "build_bundle",
    "canonical_json",
    "file_digest",
    "load_bundle",
    "verify_signature_token",
    "write_config_bundle",
]
