"""Evidence that an image is what it claims to be: signatures over its manifest digest.

``sigstore_bundle`` (keyless Sigstore bundles) and ``cosign`` (cosign simple-signing
signature files).
"""
