"""Evidence of how an artifact was built: signed in-toto statements and links.

``dsse`` (key-signed DSSE envelopes) and ``in_toto`` (SLSA provenance, verification
summaries and links, key-signed or in Sigstore bundles).
"""
