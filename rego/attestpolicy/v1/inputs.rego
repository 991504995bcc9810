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

# The claim set's contract: for each kind of value (lib.rego: _kind_text), the fields of
# that kind as [part, name] ("" is the top level). A field of a "?" kind may be absent
# or null (the same); the others are required in every part that is present. (By kind,
# so that each check below visits only its own fields.)
_input_contract := {
	"object": [["", "subject"], ["", "request"]],
	"object?": [["", "image"], ["", "provenance"], ["", "node"], ["", "runtime"]],
	"timestamp": [["", "now"], ["node", "issued_at"]],
	"timestamp?": [["node", "expires_at"], ["runtime", "expires_at"]],
	"spiffe_id": [["subject", "spiffe_id"]],
	"text": [["request", "audience"], ["image", "reference"], ["node", "id"]],
	"text?": [
		["provenance", "builder_id"], ["provenance", "source_repo"], ["provenance", "predicate_type"],
		["runtime", "namespace"], ["runtime", "service_account"], ["runtime", "pod"],
	],
	"ttl?": [["request", "requested_ttl_seconds"]],
	"digest?": [["image", "digest"], ["runtime", "image_digest"]],
	"bool": [["provenance", "verified"], ["node", "verified"], ["node", "nonce_verified"], ["runtime", "verified"]],
	"node_kind": [["node", "kind"]],
	"signatures?": [["image", "signatures"]],
	"digests?": [["provenance", "subject_digests"]],
	"measurements?": [["node", "measurements"]],
}

# Each signature in image.signatures: kind -> field names.
_signature_contract := {"bool": ["verified"], "text?": ["issuer", "subject", "key_id"]}

# Every [part, name] of the contract, for unknown fields. (A complete rule, computed
# once per decision: regorus evaluates a partial rule again on every lookup.)
_input_field_paths := {field | some fields in _input_contract; some field in fields}

# --- the claim set, read ------------------------------------------------------------

# The input, or {} when it is not an object.
default _input := {}

_input := input if is_object(input)

_input_is_object if is_object(input)

# Each part of the claim set: its object, or null when absent, null or not an object.
default _subject := null

_subject := input.subject if is_object(input.subject)

default _request := null

_request := input.request if is_object(input.request)

default _image := null

_image := input.image if is_object(input.image)

default _provenance := null

_provenance := input.provenance if is_object(input.provenance)

default _node := null

_node := input.node if is_object(input.node)

default _runtime := null

_runtime := input.runtime if is_object(input.runtime)

# The documents that hold the fields of the contract: the top level ("") and each part
# that is present.
_documents := {part: document |
	some part, document in {
		"": _input, "subject": _subject, "request": _request, "image": _image,
		"provenance": _provenance, "node": _node, "runtime": _runtime,
	}
	document != null
}

_spiffe_id := _field(_subject, "spiffe_id")

_audience := _field(_request, "audience")

_requested_ttl := _field(_request, "requested_ttl_seconds")

# The collections of the claim set when well formed, else empty (and input.invalid).
_signatures := signatures if {
	signatures := _image.signatures
	is_array(signatures)
	count(signatures) <= 256
} else := []

_subject_digests := digests if {
	digests := _provenance.subject_digests
	is_array(digests)
	count(digests) <= 4096
} else := []

_measurements := measurements if {
	measurements := _node.measurements
	is_object(measurements)
	count(measurements) <= 1024
} else := {}

# The timestamps of the claim set in ns (undefined when absent or invalid).
_now_ns := _timestamp_ns(input.now)

_node_issued_ns := _timestamp_ns(_node.issued_at)

_node_expires_ns := _timestamp_ns(_node.expires_at)

_runtime_expires_ns := _timestamp_ns(_runtime.expires_at)

_timestamp_ns(x) := time.parse_rfc3339_ns(x) if {
	_timestamps_valid
	is_string(x)
} else := time.parse_rfc3339_ns(x) if {
	is_string(x)
	regex.match(_rfc3339, x)
}

# Every timestamp of the claim set that is not null matches _rfc3339: one regex (a
# regex is compiled on every call) over the JSON array of them, which JSON writes as
# they are; an element that is not a string fails it too. When it fails, each is
# checked alone.
_timestamps_valid if {
	timestamps := [timestamp |
		some [part, name] in array.concat(_input_contract.timestamp, _input_contract["timestamp?"])
		timestamp := object.get(_documents[part], name, null)
		timestamp != null
	]
	# regal ignore:line-length
	regex.match(`^\[(?:"(?:(?:19|20)[0-9][0-9]-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:19|20)(?:0[48]|[2468][048]|[13579][26])-02-29|2000-02-29)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"[,\]])+$`, json.marshal(timestamps))
}

# --- input.invalid -------------------------------------------------------------------

# The problems of a claim set (empty for a valid one), each naming the field. Each rule
# visits only the fields it checks (a rule or function evaluation costs time).
_input_problems contains "input: must be an object" if not _input_is_object

_input_problems contains sprintf("%s: unknown field", [_path(part, name)]) if {
	some part, document in _documents
	some name, _ in document
	not _input_field_paths[[part, name]]
}

_input_problems contains sprintf("%s: is required", [_path(part, name)]) if {
	some kind, fields in _input_contract
	not endswith(kind, "?")
	some [part, name] in fields
	object.get(_documents[part], name, null) == null
}

_input_problems contains _must_be(part, name, trim_suffix(kind, "?")) if {
	some kind, fields in _input_contract
	some [part, name] in fields
	value := object.get(_documents[part], name, null)
	value != null
	type_name(value) != _kind_type[trim_suffix(kind, "?")]
}

_input_problems contains _must_be(part, name, "text") if {
	some [part, name] in array.concat(_input_contract.text, _input_contract["text?"])
	value := object.get(_documents[part], name, null)
	is_string(value)
	not _text_length(value)
}

_input_problems contains _must_be(part, name, "timestamp") if {
	not _timestamps_valid
	some [part, name] in array.concat(_input_contract.timestamp, _input_contract["timestamp?"])
	value := object.get(_documents[part], name, null)
	is_string(value)
	not regex.match(_rfc3339, value)
}

_input_problems contains _must_be(part, name, "digest") if {
	some [part, name] in _input_contract["digest?"]
	value := object.get(_documents[part], name, null)
	is_string(value)
	not _digest(value)
}

_input_problems contains _must_be(part, name, "spiffe_id") if {
	some [part, name] in _input_contract.spiffe_id
	value := object.get(_documents[part], name, null)
	is_string(value)
	not _valid_value("spiffe_id", value)
}

_input_problems contains _must_be(part, name, "node_kind") if {
	some [part, name] in _input_contract.node_kind
	value := object.get(_documents[part], name, null)
	is_string(value)
	not regex.match(`^[a-z][a-z0-9_]{0,63}$`, value)
}

_input_problems contains _must_be(part, name, "ttl") if {
	some [part, name] in _input_contract["ttl?"]
	value := object.get(_documents[part], name, null)
	is_number(value)
	not _positive_seconds(value)
}

_input_problems contains _must_be(part, name, kind) if {
	some [kind, limit] in [["signatures", 256], ["digests", 4096], ["measurements", 1024]]
	some [part, name] in _input_contract[concat("", [kind, "?"])]
	value := object.get(_documents[part], name, null)
	type_name(value) == _kind_type[kind]
	count(value) > limit
}

_input_problems contains sprintf("input.image.signatures[%d]: must be an object", [i]) if {
	some i, signature in _signatures
	not is_object(signature)
}

_input_problems contains sprintf("input.image.signatures[%d].%s: unknown field", [i, name]) if {
	some i, signature in _signatures
	is_object(signature)
	some name, _ in signature
	not name in {"verified", "issuer", "subject", "key_id"}
}

_input_problems contains problem if {
	some i, signature in _signatures
	is_object(signature)
	some kind, names in _signature_contract
	some name in names
	problem := _problem(sprintf("input.image.signatures[%d]", [i]), name, kind, object.get(signature, name, null))
	problem != null
}

# Every subject digest is a sha256 digest (one regex for all of them; each is checked
# alone only when that fails).
_subject_digests_valid if _digest_list(_subject_digests)

_input_problems contains sprintf("input.provenance.subject_digests[%d]: must be %s", [i, _kind_text.digest]) if {
	not _subject_digests_valid
	some i, digest in _subject_digests
	not _digest(digest)
}

# Every measurement is named by a string of 1 to 4096 characters and is 2 to 4096
# lowercase hex digits, in pairs (checked for all of them at once; each is checked
# alone only when that fails).
_measurements_valid if {
	values := [value | some value in _measurements]
	regex.match(`^\[(?:"(?:[0-9a-f]{2})+"(?:,"(?:[0-9a-f]{2})+")*)?\]$`, json.marshal(values))
	max(array.concat([0], [count(value) | some value in values])) <= 4096
	max(array.concat([0], [count(name) | some name, _ in _measurements])) <= 4096 # (UTF-16 in regorus: never less)
	object.get(_measurements, "", false) == false
}

_input_problems contains sprintf("input.node.measurements.%s: must be 2 to 4096 lowercase hex digits, in pairs", [name]) if {
	not _measurements_valid
	some name, value in _measurements
	not _hex(value)
}

_input_problems contains sprintf("input.node.measurements: a name must be %s (%d characters given)", [_kind_text.text, _length(name)]) if {
	not _measurements_valid
	some name, _ in _measurements
	not _text_length(name)
}

# _path(part, name) is the path of field name of part, for messages.
_path("", name) := concat(".", ["input", name])

_path(part, name) := concat(".", ["input", part, name]) if part != ""

# _must_be(part, name, kind) is the message for a field whose value is not of kind.
_must_be(part, name, kind) := sprintf("%s: must be %s", [_path(part, name), _kind_text[kind]])
