# METADATA
# title: Image
# description: |
#   Checks on the container image, whenever image evidence is present: it must be pinned
#   by a sha256 digest, signed by a trusted signer, not revoked, and allowed for the
#   workload. Tags prove nothing.
# custom:
#   codes:
#     - image.digest_required
#     - image.unsigned
#     - image.untrusted_signer
#     - image.revoked
#     - image.not_allowed
package attestpolicy.v1

import rego.v1

# The image digest (null when there is no image evidence or it names no digest).
_image_digest := _field(_image, "digest")

# The verified signatures over the image.
_verified_signatures := [signature |
	some signature in _signatures
	_field(signature, "verified") == true
]

# The issuers named by verified signatures (their subject patterns are validated:
# config.rego). Ill-typed signatures are skipped here (they are input.invalid).
_signature_issuers contains issuer if {
	some signature in _verified_signatures
	issuer := _field(signature, "issuer")
	is_string(issuer)
}

# A verified signature is trusted when it is keyless, its issuer is a trusted issuer and
# one of that issuer's subject patterns matches its subject, or when it was made with a
# signing key whose key_id is trusted; and in both cases its subject or key id is not
# revoked (config.revoked.signer_subjects).
_trusted_signature if {
	some signature in _verified_signatures
	subject := signature.subject
	is_string(subject)
	not _revoked("signer_subjects", subject)
	patterns := _trusted_issuers[signature.issuer]
	is_array(patterns)
	some pattern in patterns
	_glob_match(pattern, subject)
}

_trusted_signature if {
	some signature in _verified_signatures
	key_id := signature.key_id
	is_string(key_id)
	not _revoked("signer_subjects", key_id)
	_ = _trusted_key_ids[key_id]
}

# _glob_match(pattern, s) is glob.match(pattern, null, s) for a valid subject pattern
# (config.rego: _subject_pattern), without glob.match in the common cases: no "*"
# (equality), or one "*" (a prefix and a suffix of s that do not overlap).
_glob_match(pattern, s) if pattern == s

_glob_match(pattern, s) if {
	parts := split(pattern, "*")
	count(parts) == 2
	startswith(s, parts[0])
	endswith(s, parts[1])
	count(s) >= count(pattern) - 1
}

_glob_match(pattern, s) if {
	count(split(pattern, "*")) > 2
	_subject_pattern(pattern)
	glob.match(pattern, null, s)
}

# METADATA
# title: Image digest required
# description: The image names no digest, or its reference is not pinned by it.
# custom:
#   code: image.digest_required
violation contains {"code": "image.digest_required", "message": "image digest is missing or not a sha256 digest"} if {
	_image != null
	_image_digest == null
}

violation contains {"code": "image.digest_required", "message": sprintf("image reference %s is not pinned by digest %s", [_image.reference, _image_digest])} if {
	is_string(_image_digest)
	not endswith(_image.reference, concat("", ["@", _image_digest]))
}

# METADATA
# title: Image unsigned
# description: No signature over the image has verified == true.
# custom:
#   code: image.unsigned
violation contains {"code": "image.unsigned", "message": "image has no verified signature"} if {
	_image != null
	count(_verified_signatures) == 0
}

# METADATA
# title: Image signer untrusted
# description: |
#   Verified signatures exist, but none is from a trusted issuer with a subject matching
#   one of its patterns, or made with a trusted key; a revoked subject or key id never
#   counts as trusted.
# custom:
#   code: image.untrusted_signer
violation contains {"code": "image.untrusted_signer", "message": "no verified image signature is from a trusted, unrevoked signer"} if {
	count(_verified_signatures) > 0
	not _trusted_signature
}

# METADATA
# title: Image revoked
# description: The image digest is a key of config.revoked.image_digests.
# custom:
#   code: image.revoked
violation contains {"code": "image.revoked", "message": sprintf("image %s is revoked%s", [_image_digest, _because(reason)])} if {
	is_string(_image_digest)
	reason := _revocation("image_digests", _image_digest)
}

# An allow depends on the image digest, and on the subject and key id of every verified
# signature (any of them may be what made the image trusted): revoking one voids the allow
# (decision.rego).
_revocable contains ["image_digests", _image_digest] if is_string(_image_digest)

_revocable contains ["signer_subjects", value] if {
	some signature in _verified_signatures
	some name in ["subject", "key_id"]
	value := _field(signature, name)
	is_string(value)
}

# METADATA
# title: Image not allowed
# description: The workload lists image_digests and the image digest is not among them.
# custom:
#   code: image.not_allowed
violation contains {"code": "image.not_allowed", "message": sprintf("image %s is not allowed for workload %s", [_show(_image_digest), _spiffe_id])} if {
	_image != null
	allowed := _field(_workload, "image_digests")
	is_array(allowed)
	not _image_digest in allowed
}
