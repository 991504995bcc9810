# METADATA
# title: Input
# description: |
#   Typed access to the claim set (input). A missing or ill-typed field that a check
#   depends on is an input.invalid violation, so no check is skipped silently. An
#   evidence class (or optional field) that is null is treated as absent.
# custom:
#   codes:
#     - input.invalid
package attestpolicy.v1

import rego.v1

# The timestamps of the claim set in ns, by role ("now", "node_issued_at",
# "node_expires_at", "runtime_expires_at"; a timestamp that is absent or null has no
# entry), when every one present is RFC 3339: one regex.match checks them all (a regex
# is compiled on every call). The regex is _rfc3339 for the JSON encoding of an array
# of one or more of them (JSON writes them as they are), which an element that is not
# a string fails too. Undefined when one is not RFC 3339: then each is checked alone.
_timestamps := {role: time.parse_rfc3339_ns(text) | some role, text in texts; text != null} if {
	is_object(input)
	texts := {
		"now": object.get(input, "now", null),
		"node_issued_at": object.get(input, ["node", "issued_at"], null),
		"node_expires_at": object.get(input, ["node", "expires_at"], null),
		"runtime_expires_at": object.get(input, ["runtime", "expires_at"], null),
	}
	# regal ignore:line-length
	rfc3339_json_array := `^\[(?:"(?:(?:19|20)[0-9][0-9]-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:19|20)(?:0[48]|[2468][048]|[13579][26])-02-29|2000-02-29)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"[,\]])+$`
	regex.match(rfc3339_json_array, json.marshal([text | some text in texts; text != null]))
}

_now_ns := ns if {
	ns := _timestamps.now
} else := time.parse_rfc3339_ns(input.now) if {
	is_string(input.now)
	regex.match(_rfc3339, input.now)
}

_spiffe_id := input.subject.spiffe_id if is_string(input.subject.spiffe_id)

_audience := input.request.audience if is_string(input.request.audience)

# METADATA
# title: Input invalid
# description: The claim set lacks a field the policy needs, or a field is ill-typed.
# custom:
#   code: input.invalid
violation contains {"code": "input.invalid", "message": "input.now must be an RFC 3339 timestamp"} if {
	not _now_ns
}

violation contains {"code": "input.invalid", "message": "input.subject.spiffe_id must be a string"} if {
	not _spiffe_id
}

violation contains {"code": "input.invalid", "message": "input.request.audience must be a string"} if {
	not _audience
}

violation contains {"code": "input.invalid", "message": "input.request.requested_ttl_seconds must be a number > 0 and <= 2147483647"} if {
	ttl := input.request.requested_ttl_seconds
	ttl != null
	not _ttl_seconds_value(ttl)
}

violation contains {"code": "input.invalid", "message": sprintf("input.%s must be an object", [class])} if {
	some class in ["image", "provenance", "node", "runtime"]
	evidence := input[class]
	evidence != null
	not is_object(evidence)
}

violation contains {"code": "input.invalid", "message": sprintf("input.node.%s must be a string", [name])} if {
	input.node != null
	some name in ["kind", "id"]
	not is_string(input.node[name])
}

violation contains {"code": "input.invalid", "message": "input.node.issued_at must be an RFC 3339 timestamp"} if {
	input.node != null
	not _node_issued_ns
}

violation contains {"code": "input.invalid", "message": "input.node.expires_at must be an RFC 3339 timestamp"} if {
	input.node.expires_at != null
	not _node_expires_ns
}

violation contains {"code": "input.invalid", "message": "input.runtime.expires_at must be an RFC 3339 timestamp"} if {
	input.runtime.expires_at != null
	not _runtime_expires_ns
}

violation contains {"code": "input.invalid", "message": "input.runtime.image_digest must be a string"} if {
	digest := input.runtime.image_digest
	digest != null
	not is_string(digest)
}
