# METADATA
# title: Input
# description: |
#   The claim set (input), validated to the same contract as attestpolicy.claims.ClaimSet
#   and read with absent and null the same. A claim set that breaks the contract is
#   denied with input.invalid reasons (one per problem, naming the field) and nothing
#   else: the checks of the other files run only on valid input. Unlike a ClaimSet,
#   the policy requires `now` (the PDP fills it in; an OPA client must send it).
# custom:
#   codes:
#     - input.invalid
package attestpolicy.v1

import rego.v1

# --- the contract ------------------------------------------------------------------

# The top-level fields: each evidence class may be absent or null.
_input_fields := {
	"now": "timestamp",
	"subject": "subject",
	"request": "request",
	"image": "image?",
	"provenance": "provenance?",
	"node": "node?",
	"runtime": "runtime?",
}

# The fields of each part of a claim set (a field of a "?" kind may be absent or null).
_part_fields := {
	"subject": {"spiffe_id": "spiffe_id"},
	"request": {"audience": "text", "requested_ttl_seconds": "ttl?"},
	"image": {"reference": "text", "digest": "digest?", "signatures": "signatures?"},
	"signature": {"verified": "bool", "issuer": "text?", "subject": "text?", "key_id": "text?"},
	"provenance": {
		"verified": "bool", "builder_id": "text?", "source_repo": "text?",
		"subject_digests": "digests?", "predicate_type": "text?",
	},
	"node": {
		"kind": "node_kind", "id": "text", "verified": "bool", "nonce_verified": "bool",
		"issued_at": "timestamp", "expires_at": "timestamp?", "measurements": "measurements?",
	},
	"runtime": {
		"verified": "bool", "namespace": "text?", "service_account": "text?", "pod": "text?",
		"image_digest": "digest?", "expires_at": "timestamp?",
	},
}

# --- the claim set, read ------------------------------------------------------------

# The input, or {} when it is not an object.
default _input := {}

_input := input if is_object(input)

_input_is_object if is_object(input)

# Each part of the claim set: its object, or null when absent, null or ill-typed.
_parts := {name: _object_or_null(_field(_input, name)) |
	some name in ["subject", "request", "image", "provenance", "node", "runtime"]
}

_object_or_null(x) := x if is_object(x) else := null

_subject := _parts.subject

_request := _parts.request

_image := _parts.image

_provenance := _parts.provenance

_node := _parts.node

_runtime := _parts.runtime

_spiffe_id := _field(_subject, "spiffe_id")

_audience := _field(_request, "audience")

_requested_ttl := _field(_request, "requested_ttl_seconds")

# The collections of the claim set when well formed, else empty (and input.invalid).
_signatures := signatures if {
	signatures := _field(_image, "signatures")
	_valid("signatures", signatures)
} else := []

_subject_digests := digests if {
	digests := _field(_provenance, "subject_digests")
	_valid("digests", digests)
} else := []

_measurements := measurements if {
	measurements := _field(_node, "measurements")
	_valid("measurements", measurements)
} else := {}

# The timestamps of the claim set in ns (undefined when absent or invalid).
_now_ns := _timestamp_ns(_field(_input, "now"))

_node_issued_ns := _timestamp_ns(_field(_node, "issued_at"))

_node_expires_ns := _timestamp_ns(_field(_node, "expires_at"))

_runtime_expires_ns := _timestamp_ns(_field(_runtime, "expires_at"))

_timestamp_ns(x) := time.parse_rfc3339_ns(x) if _valid("timestamp", x)

# --- input.invalid -------------------------------------------------------------------

# The problems of a claim set (empty for a valid one), each naming the field.
_input_problems contains "input: must be an object" if not _input_is_object

_input_problems contains sprintf("input.%s: unknown field", [name]) if {
	some name, _ in _input
	not _input_fields[name]
}

_input_problems contains problem if {
	some name, kind in _input_fields
	problem := _problem("input", name, kind, _field(_input, name))
}

_input_problems contains sprintf("input.%s.%s: unknown field", [part, name]) if {
	some part, document in _parts
	document != null
	some name, _ in document
	not _part_fields[part][name]
}

_input_problems contains problem if {
	some part, document in _parts
	document != null
	some name, kind in _part_fields[part]
	problem := _problem(concat(".", ["input", part]), name, kind, _field(document, name))
}

_input_problems contains sprintf("input.image.signatures[%d]: must be an object", [i]) if {
	some i, signature in _signatures
	not is_object(signature)
}

_input_problems contains sprintf("input.image.signatures[%d].%s: unknown field", [i, name]) if {
	some i, signature in _signatures
	is_object(signature)
	some name, _ in signature
	not _part_fields.signature[name]
}

_input_problems contains problem if {
	some i, signature in _signatures
	is_object(signature)
	some name, kind in _part_fields.signature
	prefix := sprintf("input.image.signatures[%d]", [i])
	problem := _problem(prefix, name, kind, _field(signature, name))
}

_input_problems contains sprintf("input.provenance.subject_digests[%d]: must be %s", [i, _kind_text.digest]) if {
	some i, digest in _subject_digests
	not _valid("digest", digest)
}

_input_problems contains sprintf("input.node.measurements.%s: must be 2 to 4096 lowercase hex digits, in pairs", [name]) if {
	some name, value in _measurements
	not _hex(value)
}

_input_problems contains sprintf("input.node.measurements: a name must be %s (%d characters given)", [_kind_text.text, count(name)]) if {
	some name, _ in _measurements
	not _valid("text", name)
}
