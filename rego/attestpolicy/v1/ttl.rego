# METADATA
# title: TTL and validity
# description: |
#   The credential TTL is the minimum of these terms, in whole seconds; on a tie the
#   first term in this order wins:
#     request (requested_ttl_seconds) or, when none is given (absent or null), default
#     (limits.default_ttl_seconds); audience (its max_ttl_seconds); workload (its
#     max_ttl_seconds, when set); evidence_expiry (seconds until the earliest of
#     node.expires_at and runtime.expires_at, when any is set, floored).
#   valid_until is the earliest instant at which the passage of time alone can turn an
#   allow into a deny: the earliest of node.issued_at + limits.max_evidence_age_seconds
#   and (earliest evidence expiry - limits.min_ttl_seconds). All time arithmetic is in
#   integer nanoseconds, so both are exact.
# custom:
#   codes:
#     - ttl.too_short
package attestpolicy.v1

import rego.v1

# Each term is [seconds, rank, name]: min() picks the shortest, then the first.
_ttl_terms contains [floor(_requested_ttl), 0, "request"] if _requested_ttl != null

_ttl_terms contains [_limits.default_ttl_seconds, 0, "default"] if _requested_ttl == null

_ttl_terms contains [floor(_audience_entry.max_ttl_seconds), 1, "audience"]

_ttl_terms contains [floor(seconds), 2, "workload"] if {
	seconds := _field(_workload, "max_ttl_seconds")
	seconds != null
}

_ttl_terms contains [_whole_seconds(_earliest_expiry_ns - _now_ns), 3, "evidence_expiry"]

# The instants (ns) at which evidence expires, and the earliest of them.
_expiries contains _node_expires_ns

_expiries contains _runtime_expires_ns

_earliest_expiry_ns := min(_expiries) if count(_expiries) > 0

_ttl := min(_ttl_terms)

# The TTL of an allow, in whole seconds.
ttl_seconds := _ttl[0]

# The name of the term that set ttl_seconds.
ttl_bound_by := _ttl[2]

# Instants (ns) at which the passage of time alone turns an allow into a deny.
_deadlines contains _node_issued_ns + _limits.max_age_ns

_deadlines contains _earliest_expiry_ns - _limits.min_ttl_ns

# The end of the validity of an allow, as RFC 3339 UTC (null when nothing expires).
valid_until := _format_instant(min(_deadlines)) if {
	count(_deadlines) > 0
} else := null

# METADATA
# title: TTL too short
# description: The computed TTL is below limits.min_ttl_seconds.
# custom:
#   code: ttl.too_short
violation contains {"code": "ttl.too_short", "message": sprintf("TTL of %v seconds (bound by %s) is below limits.min_ttl_seconds", [ttl_seconds, ttl_bound_by])} if {
	ttl_seconds < _limits.min_ttl_seconds
}
