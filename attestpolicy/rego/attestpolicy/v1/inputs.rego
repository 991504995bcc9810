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

_now_ns := time.parse_rfc3339_ns(input.now) if {
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
