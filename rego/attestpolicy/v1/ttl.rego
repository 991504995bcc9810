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
#   An allow carries its terms (ttl_terms, in tie-break order: a fixed term has seconds,
#   a term that shrinks with time has until, the instant it reaches zero), so a cache
#   can recompute the TTL at a later instant from the decision alone, as this policy would.
# custom:
#   codes:
#     - ttl.too_short
package attestpolicy.v1

import rego.v1

# Each term is [rank, name, seconds, until]: until (the instant, RFC 3339) is set for a
# term that shrinks as time passes, and null for a fixed one.
_ttl_terms contains [0, "request", floor(_requested_ttl), null] if _requested_ttl != null

_ttl_terms contains [0, "default", _limits.default_ttl_seconds, null] if _requested_ttl == null

_ttl_terms contains [1, "audience", floor(_audience_entry.max_ttl_seconds), null]

_ttl_terms contains [2, "workload", floor(seconds), null] if {
	seconds := _field(_workload, "max_ttl_seconds")
	seconds != null
}

_ttl_terms contains [3, "evidence_expiry", _whole_seconds(_earliest_expiry_ns - _now_ns), _format_instant(_earliest_expiry_ns)]

# The terms of an allow, in tie-break order: {"name", "seconds"} for a fixed term,
# {"name", "until"} for one that shrinks as time passes.
ttl_terms := [_ttl_term(name, seconds, until) | some [_, name, seconds, until] in sort(_ttl_terms)]

_ttl_term(name, seconds, null) := {"name": name, "seconds": seconds}

_ttl_term(name, _, until) := {"name": name, "until": until} if until != null

# The instants (ns) at which evidence expires, and the earliest of them.
_expiries contains _node_expires_ns

_expiries contains _runtime_expires_ns

_earliest_expiry_ns := min(_expiries) if count(_expiries) > 0

# [seconds, rank, name] of the shortest term; on a tie, the first.
_ttl := min({[seconds, rank, name] | some [rank, name, seconds, _] in _ttl_terms})

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
