"""Evidence verifiers: one module per format, each turning raw evidence into claims.

Grouped by what the evidence proves: ``image/`` (signatures over the image digest),
``provenance/`` (how it was built), ``node/`` (the machine it runs on) and ``workload/``
(who runs, and where). ``document`` reads the evidence document and the trust
configuration; ``verify`` runs every verifier over them and builds the claim set. Private
plumbing shared by several groups is in ``_common`` and ``_crypto``.
"""
