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

Bundles over time: a :class:`BundlePoller` (``_polling``, over ``_download``) polls a
bundle server as OPA does, a :class:`BundleWatcher` (``_watching``) re-reads a local file
or directory; both are a :class:`BundleFeed` (``_feed``) that verifies each bundle before
handing it to ``on_bundle`` (an :class:`EvaluatorActivator`, ``_activation``: the
evaluator's atomic reload) and keeps a :class:`BundleStatus` (``_status``: OPA's status
format, :func:`status_document` for ``GET /v1/status``). :class:`BundleServer`
(``_server``) serves a directory of bundles with ETags; :func:`load_token` (``_token``)
reads the bearer token both sides share.
"""

from __future__ import annotations

from attestpolicy._keys import PrivateKey, PublicKey
from attestpolicy.bundle._activation import EvaluatorActivator
from attestpolicy.bundle._building import build_bundle, write_config_bundle
from attestpolicy.bundle._feed import BundleFeed
from attestpolicy.bundle._format import (
    BUNDLE_ROOTS,
    CONFIG_ROOTS,
    SIGNATURE_CODE,
    BundleManifest,
    canonical_json,
    file_digest,
)
from attestpolicy.bundle._loading import DEFAULT_LIMITS, BundleLimits, LoadedBundle, load_bundle
from attestpolicy.bundle._polling import BundlePoller
from attestpolicy.bundle._server import BundleServer
from attestpolicy.bundle._signing import SignedFile, verify_signature_token
from attestpolicy.bundle._status import BundleStatus, instance_labels, status_document
from attestpolicy.bundle._token import TOKEN_ENV, load_token
from attestpolicy.bundle._watching import BundleWatcher

__all__ = [
    "BUNDLE_ROOTS",
    "CONFIG_ROOTS",
    "DEFAULT_LIMITS",
    "SIGNATURE_CODE",
    "TOKEN_ENV",
    "BundleFeed",
    "BundleLimits",
    "BundleManifest",
    "BundlePoller",
    "BundleServer",
    "BundleStatus",
    "BundleWatcher",
    "EvaluatorActivator",
    "LoadedBundle",
    "PrivateKey",
    "PublicKey",
    "SignedFile",
    "build_bundle",
    "canonical_json",
    "file_digest",
    "instance_labels",
    "load_bundle",
    "load_token",
    "status_document",
    "verify_signature_token",
    "write_config_bundle",
]
