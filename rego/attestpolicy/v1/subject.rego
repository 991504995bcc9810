# METADATA
# title: Subject and request
# description: |
#   The subject must be a registered, unrevoked workload, the audience must be known,
#   and every evidence class the workload requires must be present.
# custom:
#   codes:
#     - subject.unregistered
#     - subject.revoked
#     - request.unknown_audience
#     - evidence.missing
package attestpolicy.v1

import rego.v1

# The evidence classes of the claim set (null when absent).
_evidence := {"image": _image, "provenance": _provenance, "node": _node, "runtime": _runtime}

# METADATA
# title: Subject unregistered
# description: subject.spiffe_id has no entry in config.workloads.
# custom:
#   code: subject.unregistered
violation contains {"code": "subject.unregistered", "message": sprintf("workload %s is not registered", [_spiffe_id])} if {
	_workload == null
}

# METADATA
# title: Subject revoked
# description: subject.spiffe_id is a key of config.revoked.spiffe_ids.
# custom:
#   code: subject.revoked
violation contains {"code": "subject.revoked", "message": sprintf("workload %s is revoked%s", [_spiffe_id, _because(reason)])} if {
	reason := _revocation("spiffe_ids", _spiffe_id)
}

# An allow depends on the workload's SPIFFE ID: revoking it voids the allow (decision.rego).
_revocable contains ["spiffe_ids", _spiffe_id] if is_string(_spiffe_id)

# METADATA
# title: Unknown audience
# description: request.audience has no entry in config.audiences.
# custom:
#   code: request.unknown_audience
violation contains {"code": "request.unknown_audience", "message": sprintf("audience %s is not configured", [_audience])} if {
	_audience_entry == null
}

# METADATA
# title: Required evidence missing
# description: An evidence class in the workload's require list is absent or null (one per class).
# custom:
#   code: evidence.missing
violation contains {"code": "evidence.missing", "message": sprintf("required %s evidence is absent", [class])} if {
	some class in _required
	_evidence[class] == null
}

_required := required if {
	required := _field(_workload, "require")
	is_array(required)
} else := []

# _because(reason) is ": <reason>" for a revocation's non-empty reason string, else "".
_because(reason) := concat("", [": ", reason]) if {
	is_string(reason)
	reason != ""
} else := ""
