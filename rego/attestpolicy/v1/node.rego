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
#     - node.kind_not_allowed
package attestpolicy.v1

import rego.v1

# METADATA
# title: Node unverified
# description: node.verified is not true.
# custom:
#   code: node.unverified
violation contains {"code": "node.unverified", "message": "node evidence is not verified"} if {
	_field(_node, "verified") == false
}

# METADATA
# title: Node nonce not verified
# description: node.nonce_verified is not true (the evidence may be a replay).
# custom:
#   code: node.nonce
violation contains {"code": "node.nonce", "message": "node evidence is not bound to the expected nonce"} if {
	_field(_node, "nonce_verified") == false
}

# METADATA
# title: Node evidence stale
# description: now - node.issued_at > limits.max_evidence_age_seconds (exactly at the limit is fresh).
# custom:
#   code: node.stale
violation contains {"code": "node.stale", "message": sprintf("node evidence issued at %s is older than limits.max_evidence_age_seconds", [_node.issued_at])} if {
	_now_ns - _node_issued_ns > _limits.max_age_ns
}

# METADATA
# title: Node evidence from the future
# description: node.issued_at - now > limits.clock_skew_seconds (exactly at the limit is accepted).
# custom:
#   code: node.future
violation contains {"code": "node.future", "message": sprintf("node evidence issued at %s is ahead of now by more than limits.clock_skew_seconds", [_node.issued_at])} if {
	_node_issued_ns - _now_ns > _limits.clock_skew_ns
}

# METADATA
# title: Node evidence expired
# description: node.expires_at <= now.
# custom:
#   code: node.expired
violation contains {"code": "node.expired", "message": sprintf("node evidence expired at %s", [_node.expires_at])} if {
	_node_expires_ns <= _now_ns
}

# METADATA
# title: Node measurement mismatch
# description: |
#   A baseline exists for node.kind and a baseline measurement is missing from the node
#   evidence or differs from it (one violation per measurement).
# custom:
#   code: node.measurement_mismatch
violation contains {"code": "node.measurement_mismatch", "message": message} if {
	_node != null
	some name, expected in _node_baseline
	measured := object.get(_measurements, name, null)
	measured != expected
	message := _measurement_message(name, measured)
}

_measurement_message(name, null) := sprintf("measurement %s is missing", [name])

_measurement_message(name, measured) := sprintf("measurement %s differs from the baseline", [name]) if {
	measured != null
}

# METADATA
# title: Node kind not allowed
# description: |
#   The workload lists node_kinds and node.kind is not among them (a workload that
#   requires node evidence names the kinds whose baselines it trusts).
# custom:
#   code: node.kind_not_allowed
violation contains {"code": "node.kind_not_allowed", "message": sprintf("node kind %s is not allowed for workload %s", [_node.kind, _spiffe_id])} if {
	kinds := _field(_workload, "node_kinds")
	is_array(kinds)
	_node != null
	not _node.kind in kinds
}

# METADATA
# title: Node revoked
# description: node.id is a key of config.revoked.node_ids.
# custom:
#   code: node.revoked
violation contains {"code": "node.revoked", "message": sprintf("node %s is revoked%s", [_node.id, _because(reason)])} if {
	reason := _revocation("node_ids", _field(_node, "id"))
}

# An allow depends on the node's id: revoking it voids the allow (decision.rego).
_revocable contains ["node_ids", node_id] if {
	node_id := _field(_node, "id")
	is_string(node_id)
}
