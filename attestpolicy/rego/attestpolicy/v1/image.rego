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

# The image digest, when image evidence is present and its digest is a sha256 digest:
# "sha256:" and 64 lowercase hex digits (no regex: trimming the hex digits off the end
# must leave exactly the prefix).
_image_digest := digest if {
	digest := input.image.digest
	is_string(digest)
	count(digest) == 71
	trim_right(digest, "0123456789abcdef") == "sha256:"
}

_image_pinned if {
	reference := input.image.reference
	is_string(reference)
	endswith(reference, concat("", ["@", _image_digest]))
}

_image_verified_signature if input.image.signatures[_].verified == true

# A verified signature is trusted when its subject is not revoked and a configured
# signer has the same issuer and a subject pattern that matches it. A verified signature
# made with a signing key (cosign with a public key: no issuer or subject) is trusted
# when a configured signer names its key_id, the verifier's key fingerprint, and that key
# id is not in revoked.signer_subjects.
_image_trusted_signature := true if {
	signature := input.image.signatures[_]
	signature.verified == true
	is_string(signature.issuer)
	subject := signature.subject
	is_string(subject)
	not subject in _config.revoked.signer_subjects
	signer := _config.trusted_signers[_]
	signer.issuer == signature.issuer
	pattern := signer.subject
	is_string(pattern)
	_signer_patterns_valid
	_glob_match(pattern, subject)
} else := true if {
	signature := input.image.signatures[_]
	signature.verified == true
	key_id := signature.key_id
	is_string(key_id)
	not key_id in _config.revoked.signer_subjects
	_config.trusted_signers[_].key_id == key_id
}

# Signer subject patterns are globs in which only "*" is special: it matches any
# characters, "/" and "." included (glob.match with null delimiters). Any other glob
# syntax makes every pattern unusable (config.invalid): regorus raises on a malformed
# glob where OPA returns undefined, and the two escape glob syntax differently.
_glob_syntax := `[?\[\]{}\\]`

_signer_patterns_valid if {
	patterns := [pattern | pattern := _config.trusted_signers[_].subject; is_string(pattern)]
	not regex.match(`[?\[\]{}\\]`, concat("\n", patterns)) # _glob_syntax, written out
}

# _glob_match(pattern, s) is glob.match(pattern, null, s) for a valid signer pattern,
# without glob.match in the common cases: no "*" (equality), or one "*" (a prefix and a
# suffix of s that do not overlap).
_glob_match(pattern, s) := true if {
	pattern == s
} else := true if {
	parts := split(pattern, "*")
	count(parts) == 2
	startswith(s, parts[0])
	endswith(s, parts[1])
	count(s) >= count(pattern) - 1
} else := glob.match(pattern, null, s) if {
	count(split(pattern, "*")) > 2
}

# METADATA
# title: Signer pattern invalid
# description: A trusted signer's subject pattern uses glob syntax other than "*".
# custom:
#   code: config.invalid
violation contains {"code": "config.invalid", "message": sprintf("config.trusted_signers[%d].subject may use no glob syntax but *", [i])} if {
	not _signer_patterns_valid
	pattern := _config.trusted_signers[i].subject
	is_string(pattern)
	regex.match(_glob_syntax, pattern)
}

# METADATA
# title: Image digest required
# description: The image digest is not a sha256 digest, or the reference is not pinned by it.
# custom:
#   code: image.digest_required
violation contains {"code": "image.digest_required", "message": "image digest is missing or not a sha256 digest"} if {
	input.image != null
	not _image_digest
}

violation contains {"code": "image.digest_required", "message": sprintf("image reference %s is not pinned by digest %s", [_show_field(input.image, "reference"), _image_digest])} if {
	_image_digest
	not _image_pinned
}

# METADATA
# title: Image unsigned
# description: No signature over the image has verified == true.
# custom:
#   code: image.unsigned
violation contains {"code": "image.unsigned", "message": "image has no verified signature"} if {
	input.image != null
	not _image_verified_signature
}

# METADATA
# title: Image signer untrusted
# description: |
#   Verified signatures exist, but none has an issuer equal to, and a subject matching,
#   a trusted signer, or a key_id a trusted signer names. A signature whose subject or
#   key id is revoked never counts as trusted.
# custom:
#   code: image.untrusted_signer
violation contains {"code": "image.untrusted_signer", "message": "no verified image signature is from a trusted, unrevoked signer"} if {
	_image_verified_signature
	not _image_trusted_signature
}

# METADATA
# title: Image revoked
# description: The image digest is in config.revoked.image_digests.
# custom:
#   code: image.revoked
violation contains {"code": "image.revoked", "message": sprintf("image %s is revoked", [_show(input.image.digest)])} if {
	input.image.digest in _config.revoked.image_digests
}

# METADATA
# title: Image not allowed
# description: The workload lists image_digests and the image digest is not among them.
# custom:
#   code: image.not_allowed
violation contains {"code": "image.not_allowed", "message": sprintf("image %s is not allowed for workload %s", [_show_field(input.image, "digest"), _spiffe_id])} if {
	input.image != null
	allowed := _workload.image_digests
	is_array(allowed)
	not input.image.digest in allowed
}
