# METADATA
# title: Node
# description: |
#   Checks on node evidence (TPM quote, cloud identity document, ...), whenever it is
#   present: verified, bound to our nonce, fresh, not from the future, not expired,
#   matching the measured baseline for its kind, and not revoked.
# custom:
#   codes:
#     - node.unverified
#     - node.nonce
#     - node.stale
#     - node.future
#     - node.expired
#     - node.measurement_mismatch
#     - node.revoked
#     - config.invalid
package attestpolicy.v1

import rego.v1

_node_issued_ns := ns if {
	ns := _timestamps.node_issued_at
} else := time.parse_rfc3339_ns(input.node.issued_at) if {
	is_string(input.node.issued_at)
	regex.match(_rfc3339, input.node.issued_at)
}

_node_expires_ns := ns if {
	ns := _timestamps.node_expires_at
} else := time.parse_rfc3339_ns(input.node.expires_at) if {
	is_string(input.node.expires_at)
	regex.match(_rfc3339, input.node.expires_at)
}

_node_baseline := _config.node_baselines[input.node.kind]

# METADATA
# title: Node unverified
# description: node.verified is not true.
# custom:
#   code: node.unverified
violation contains {"code": "node.unverified", "message": "node evidence is not verified"} if {
	input.node != null
	not input.node.verified == true
}

# METADATA
# title: Node nonce not verified
# description: node.nonce_verified is not true (the evidence may be a replay).
# custom:
#   code: node.nonce
violation contains {"code": "node.nonce", "message": "node evidence is not bound to the expected nonce"} if {
	input.node != null
	not input.node.nonce_verified == true
}

# METADATA
# title: Node evidence stale
# description: now - node.issued_at > limits.max_evidence_age_seconds (exactly at the limit is fresh).
# custom:
#   code: node.stale
violation contains {"code": "node.stale", "message": sprintf("node evidence issued at %s is older than limits.max_evidence_age_seconds", [input.node.issued_at])} if {
	_now_ns - _node_issued_ns > _limits.max_age_ns
}

# METADATA
# title: Node evidence from the future
# description: node.issued_at - now > limits.clock_skew_seconds (exactly at the limit is accepted).
# custom:
#   code: node.future
violation contains {"code": "node.future", "message": sprintf("node evidence issued at %s is ahead of now by more than limits.clock_skew_seconds", [input.node.issued_at])} if {
	_node_issued_ns - _now_ns > _limits.clock_skew_ns
}

# METADATA
# title: Node evidence expired
# description: node.expires_at <= now.
# custom:
#   code: node.expired
violation contains {"code": "node.expired", "message": sprintf("node evidence expired at %s", [input.node.expires_at])} if {
	_node_expires_ns <= _now_ns
}

# METADATA
# title: Node measurement mismatch
# description: |
#   A baseline exists for node.kind and a baseline measurement is missing from the node
#   evidence or differs from it (one violation per measurement).
# custom:
#   code: node.measurement_mismatch
violation contains {"code": "node.measurement_mismatch", "message": _measurement_message(name)} if {
	is_object(_node_baseline)
	expected := _node_baseline[name]
	not input.node.measurements[name] == expected
}

_measurement_message(name) := sprintf("measurement %s differs from the baseline", [name]) if {
	input.node.measurements[name] != null
} else := sprintf("measurement %s is missing", [name])

# METADATA
# title: Node revoked
# description: node.id is in config.revoked.node_ids.
# custom:
#   code: node.revoked
violation contains {"code": "node.revoked", "message": sprintf("node %s is revoked", [_show(input.node.id)])} if {
	input.node.id in _config.revoked.node_ids
}

# METADATA
# title: Node baseline invalid
# description: The baseline configured for this node kind is not an object.
# custom:
#   code: config.invalid
violation contains {"code": "config.invalid", "message": sprintf("config.node_baselines[%s] must be an object", [input.node.kind])} if {
	_node_baseline != null
	not is_object(_node_baseline)
}
