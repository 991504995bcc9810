"""Cryptographic plumbing shared by the evidence verifiers (private).

``x509`` (certificates, keys, chains), ``jose`` (JWS, JWKS and JWT claims), ``tokens``
(the identity-token profile of GCE instance identity tokens and PSATs), ``rekor``
(transparency-log entries), ``fulcio`` (signing-certificate identities, SCTs) and
``trusted_root`` (Sigstore's ``trusted_root.json``). Nothing here decides anything: each
function checks one thing and raises.
"""
