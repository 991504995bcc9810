# METADATA
# title: Decision
# description: |
#   The entrypoint data.attestpolicy.v1.decision. It is deny unless there is no
#   violation, and always defined: if an allow cannot be fully computed it is a deny.
#   A claim set or a configuration that breaks its contract is denied with the
#   input.invalid and config.invalid reasons alone; the checks run only on valid input.
#   An allow also carries what a cache needs to keep it correct without restating any
#   rule: ttl_terms (ttl.rego) to recompute the TTL later, and revocable, the sorted
#   [config.revoked member, value] pairs it depends on (revoking any voids it).
package attestpolicy.v1

import rego.v1

# METADATA
# title: Input invalid
# description: |
#   The claim set breaks the contract of attestpolicy.claims.ClaimSet, or lacks now
#   (inputs.rego). One reason per problem, naming the field.
# custom:
#   code: input.invalid
_invalid contains {"code": "input.invalid", "message": message} if some message in _input_problems

# METADATA
# title: Configuration invalid
# description: |
#   A part of data.attestpolicy.config that this decision reads is malformed
#   (config.rego). One reason per problem, naming the entry.
# custom:
#   code: config.invalid
_invalid contains {"code": "config.invalid", "message": message} if some message in _config_problems

# Reasons, one per distinct violation, sorted by (code, message).
reasons := sort([reason | some reason in _invalid]) if {
	count(_invalid) > 0
} else := sort([reason | some reason in violation])

# METADATA
# title: Decision
# description: The decision object for the claim set in input.
# scope: document
# entrypoint: true
default decision := {
	"allow": false,
	"ttl_seconds": 0,
	"reasons": [{"code": "policy.incomplete", "message": "the policy could not compute a TTL for an allow"}],
	"ttl_bound_by": null,
	"valid_until": null,
	"ttl_terms": [],
	"revocable": [],
}

decision := {
	"allow": false,
	"ttl_seconds": 0,
	"reasons": reasons,
	"ttl_bound_by": null,
	"valid_until": null,
	"ttl_terms": [],
	"revocable": [],
} if {
	count(reasons) > 0
} else := {
	"allow": true,
	"ttl_seconds": ttl_seconds,
	"reasons": [],
	"ttl_bound_by": ttl_bound_by,
	"valid_until": valid_until,
	"ttl_terms": ttl_terms,
	"revocable": sort(_revocable),
}
