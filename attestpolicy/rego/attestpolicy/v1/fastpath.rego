# METADATA
# title: Fast path
# description: |
#   The allow for a claim set of the usual shape, computed in one rule body (with one
#   function per evidence class) rather than rule by rule: the engine spends about 3 us
#   on each rule it evaluates, and the violation rules are many. _fast_allow is defined
#   only when every check of the policy passes in the form written here, and then it
#   is the decision; for any other claim set the decision is that of the violation
#   rules (_decision_by_rules), which define the policy. The fast path may be stricter
#   than the rules (an unusual claim set that they allow takes the slow path), never
#   looser, and it computes the same TTL and validity: a change to a check or to the
#   TTL needs the same change here. The Rego tests compare the two on every claim set
#   they decide (decide() in fixtures_test.rego); fastpath_test.rego checks which
#   claim sets take the fast path.
#
#   A range check written as two bounds (0 < x <= 2147483647) admits numbers only,
#   without is_number: Rego orders null and booleans below numbers, strings and
#   collections above them.
package attestpolicy.v1

import rego.v1

_fast_allow := {
	"allow": true,
	"ttl_seconds": ttl[0],
	"reasons": [],
	"ttl_bound_by": ttl[2],
	"valid_until": _format_deadline(deadlines),
} if {
	config := data.attestpolicy.config

	# The limits (config.rego: _limits; so the configuration is an object).
	limits := config.limits
	max_age := limits.max_evidence_age_seconds
	max_age >= 0
	max_age <= 2147483647
	skew := limits.clock_skew_seconds
	skew >= 0
	skew <= 2147483647
	min_ttl := limits.min_ttl_seconds
	min_ttl > 0
	min_ttl <= 2147483647
	default_ttl := limits.default_ttl_seconds
	default_ttl > 0
	default_ttl <= 2147483647

	# The timestamps of the claim set, all RFC 3339 (inputs.rego), and no expiry past.
	timestamps := _timestamps
	now := timestamps.now
	expiries := [timestamps[role] | some role in ["node_expires_at", "runtime_expires_at"]]
	wait := min(array.concat(expiries, [now + 2147483647000000000])) - now
	wait > 0 # no evidence has expired (node.rego, runtime.rego)

	# The evidence, each class absent or passing every check of its file. (It comes
	# first because it is what denies most often: a deny is decided by the violation
	# rules, after the fast path has failed.)
	spiffe_id := input.subject.spiffe_id
	is_string(spiffe_id)
	workload := config.workloads[spiffe_id]
	is_object(workload)
	is_object(config.node_baselines)
	node_deadlines := _fast_node(config, timestamps, max_age, skew)
	_fast_runtime(workload)
	image_digest := _fast_image(config, workload) # null: no image evidence
	_fast_provenance(config, workload, image_digest)

	# The rest of the configuration (config.rego, image.rego: _signer_patterns_valid).
	revoked := config.revoked
	is_array(revoked.spiffe_ids) # so revoked is an object
	is_array(revoked.signer_subjects)
	is_array(revoked.node_ids)
	is_array(revoked.image_digests)
	patterns := [pattern | pattern := config.trusted_signers[_].subject; is_string(pattern)]
	not regex.match(`[?\[\]{}\\]`, concat("\n", patterns)) # _glob_syntax

	# The subject: a registered (above), unrevoked workload with a well-formed entry, and
	# every evidence class it requires (subject.rego, inputs.rego).
	not spiffe_id in revoked.spiffe_ids
	is_string(workload.namespace)
	is_string(workload.service_account)
	require := workload.require
	is_array(require)
	classes := {"image", "provenance", "node", "runtime"} # _evidence_classes
	every class in require {
		class in classes
		input[class] != null
	}
	is_string(object.get(workload, "source_repo", ""))
	is_array(object.get(workload, "image_digests", []))
	workload_ttl := object.get(workload, "max_ttl_seconds", 2147483647) # none: see the TTL
	workload_ttl > 0
	workload_ttl <= 2147483647

	# The request: a known audience with a well-formed entry, and no requested TTL or a
	# valid one (inputs.rego, subject.rego, ttl.rego: _ttl_request).
	request := input.request
	audience := request.audience
	is_string(audience)
	audience_ttl := config.audiences[audience].max_ttl_seconds
	audience_ttl > 0
	audience_ttl <= 2147483647
	request_term := _fast_request_term(request.requested_ttl_seconds, default_ttl)

	# The TTL (ttl.rego). The audience term is always there, so a workload term of
	# 2147483647 (no max_ttl_seconds) or an evidence_expiry term of 2147483647 (no
	# expiry, or a later one) never sets the TTL: a tie goes to the audience term.
	# Every expiry is after now (above), so the whole seconds until it are exact.
	ttl := min([
		request_term,
		[floor(audience_ttl), 1, "audience"],
		[floor(workload_ttl), 2, "workload"],
		[floor((wait - (wait % 1000000000)) / 1000000000), 3, "evidence_expiry"],
	])
	ttl[0] >= min_ttl

	# The instants at which time alone ends the allow (ttl.rego: _deadlines).
	deadlines := array.concat(node_deadlines, [deadline |
		count(expiries) > 0
		deadline := min(expiries) - round(min_ttl * 1000000000)
	])
}

# _fast_request_term(requested, default_ttl) is the first TTL term: the default when no
# TTL is requested (null), else the requested TTL when valid (ttl.rego: _ttl_request).
_fast_request_term(requested, default_ttl) := [floor(default_ttl), 0, "default"] if {
	requested == null
} else := [floor(requested), 0, "request"] if {
	is_number(requested)
	requested > 0
	requested <= 2147483647
}

# _fast_image(config, workload) is the image digest when the image evidence passes
# every check of image.rego, or null without image evidence.
_fast_image(config, workload) := digest if {
	image := input.image
	digest := image.digest
	is_string(digest) # so input.image is an object
	count(digest) == 71 # and a sha256 digest (_image_digest)
	trim_right(digest, "0123456789abcdef") == "sha256:"
	reference := image.reference
	is_string(reference)
	endswith(reference, concat("", ["@", digest])) # pinned (_image_pinned)
	_fast_trusted_signature
	not digest in config.revoked.image_digests
	digest in object.get(workload, "image_digests", [digest]) # allowed
} else := null if {
	not input.image != null # absent or null
}

# _fast_trusted_signature holds when a verified signature over the image is trusted
# (image.rego: _image_trusted_signature): keyless, from a signer whose subject pattern
# has one "*" (a prefix and a suffix that do not overlap, as in _glob_match) or none; or
# made with a trusted signing key. A rule, not a function: a rule stops at the first
# match, a function tries every signature and signer. (The signer patterns are valid:
# _fast_allow checks them.)
_fast_trusted_signature := true if {
	config := data.attestpolicy.config
	signature := input.image.signatures[_]
	signature.verified == true
	is_string(signature.issuer)
	subject := signature.subject
	is_string(subject)
	not subject in config.revoked.signer_subjects
	signer := config.trusted_signers[_]
	signer.issuer == signature.issuer
	pattern := signer.subject
	is_string(pattern)
	parts := split(pattern, "*")
	count(parts) == 2
	startswith(subject, parts[0])
	endswith(trim_prefix(subject, parts[0]), parts[1]) # the suffix after the prefix
} else := true if {
	config := data.attestpolicy.config
	signature := input.image.signatures[_]
	signature.verified == true
	is_string(signature.issuer)
	subject := signature.subject
	is_string(subject)
	not subject in config.revoked.signer_subjects
	signer := config.trusted_signers[_]
	signer.issuer == signature.issuer
	signer.subject == subject # a pattern without "*" (with one, subject has it too)
} else := true if {
	config := data.attestpolicy.config
	signature := input.image.signatures[_]
	signature.verified == true
	key_id := signature.key_id
	is_string(key_id)
	not key_id in config.revoked.signer_subjects
	config.trusted_signers[_].key_id == key_id
}

# _fast_provenance(config, workload, image_digest) holds when the provenance passes
# every check of provenance.rego, or without provenance.
_fast_provenance(config, workload, image_digest) := true if {
	provenance := input.provenance
	provenance.verified == true # so input.provenance is an object
	builder := provenance.builder_id
	is_string(builder)
	builder in config.trusted_builders
	provenance.source_repo == object.get(workload, "source_repo", provenance.source_repo)
	digests := provenance.subject_digests
	is_array(digests)
	image_digest in array.concat([null], digests) # no image evidence (null), or named
} else := true if {
	not input.provenance != null # absent or null
}

# _fast_node(config, timestamps, max_age, skew) is [the instant (ns) the node evidence
# goes stale] when it passes every check of node.rego (its expiry is checked by
# _fast_allow), or [] without node evidence. (config.node_baselines is an object: the
# caller checks it.)
_fast_node(config, timestamps, max_age, skew) := [issued + max_age_ns] if {
	node := input.node
	node.verified == true # so node is an object
	node.nonce_verified == true
	kind := node.kind
	is_string(kind)
	id := node.id
	is_string(id)
	not id in config.revoked.node_ids
	issued := timestamps.node_issued_at
	max_age_ns := round(max_age * 1000000000)
	timestamps.now - issued <= max_age_ns # not stale
	issued - timestamps.now <= round(skew * 1000000000) # not from the future
	baseline := object.get(config.node_baselines, kind, {}) # none for this kind: {}
	is_object(baseline)
	measurements := node.measurements
	is_object(measurements)
	object.filter(measurements, baseline) == baseline # every baseline entry, equal
} else := [] if {
	not input.node != null # absent or null
}

# _fast_runtime(workload) holds when the runtime evidence passes every check of
# runtime.rego (its expiry is checked by _fast_allow), or without it. (When there is
# image evidence, _fast_image checks that its digest is a string.)
_fast_runtime(workload) := true if {
	runtime := input.runtime
	runtime.verified == true # so runtime is an object
	runtime.namespace == workload.namespace
	runtime.service_account == workload.service_account
	runtime.image_digest in [null, input.image.digest] # no image, or the attested one
} else := true if {
	runtime := input.runtime
	runtime.verified == true
	runtime.namespace == workload.namespace
	runtime.service_account == workload.service_account
	not input.image != null # no image evidence (absent or null) to compare with
	type_name(runtime.image_digest) in {"null", "string"}
} else := true if {
	not input.runtime != null # absent or null
}
