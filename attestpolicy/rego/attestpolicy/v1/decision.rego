# METADATA
# title: Decision
# description: |
#   The entrypoint data.attestpolicy.v1.decision. It is deny unless there is no
#   violation, and always defined: if an allow cannot be fully computed it is a deny.
package attestpolicy.v1

import rego.v1

# Reasons, one per distinct violation, sorted by (code, message).
reasons := sort([reason | some reason in violation])

# METADATA
# title: Decision
# description: |
#   The decision object for the claim set in input: the fast path's allow when it
#   applies (fastpath.rego), else the decision of the violation rules.
# scope: document
# entrypoint: true
default decision := {
	"allow": false,
	"ttl_seconds": 0,
	"reasons": [{"code": "policy.incomplete", "message": "the policy could not compute a TTL for an allow"}],
	"ttl_bound_by": null,
	"valid_until": null,
}

decision := allow if {
	allow := _fast_allow
} else := by_rules if {
	by_rules := _decision_by_rules
}

# The decision of the violation rules: the definition of the policy.
_decision_by_rules := {
	"allow": false,
	"ttl_seconds": 0,
	"reasons": reasons,
	"ttl_bound_by": null,
	"valid_until": null,
} if {
	count(violation) > 0
} else := {
	"allow": true,
	"ttl_seconds": ttl_seconds,
	"reasons": [],
	"ttl_bound_by": ttl_bound_by,
	"valid_until": valid_until,
}
