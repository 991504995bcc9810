# METADATA
# title: attestpolicy v1
# description: |
#   Default attestation policy. The entrypoint is data.attestpolicy.v1.decision; the
#   configuration is read from data.attestpolicy.config.
#
#   Both engines must reach the same decision: OPA turns a builtin type error into
#   undefined, regorus raises. So every builtin argument is type-checked first, and a
#   value that may not be a collection is iterated as `x := coll[_]` (undefined on a
#   scalar in both engines) rather than `some x in coll` (which raises in regorus).
#   Regular expressions use [0-9], not \d (Unicode digits in Rust, ASCII in Go).
#
#   Speed: the engine spends about 3 us on each rule or function it evaluates, about
#   1 us on each builtin call and about 10 us on each regex.match (compiled per call).
#   An allow for a claim set of the usual shape is computed by the fast path
#   (fastpath.rego) in one rule body; any other claim set is decided rule by rule,
#   one violation rule per check (decision.rego).
package attestpolicy.v1

import rego.v1

# Numbers are written out (a rule, even a constant, costs an evaluation): 1000000000
# is the nanoseconds in a second; 2147483647 is the largest number of seconds accepted
# for a TTL, an age or a skew (about 68 years, as in the claim set), which keeps every
# instant the policy computes inside the int64 nanosecond range of time.format.

# RFC 3339 with an explicit offset, at most nanosecond precision, no leap second, on a
# real calendar day (leap years included) of the years 1900-2099, well inside the int64
# nanosecond range of time.parse_rfc3339_ns and time.format (up to 2262). A string that matches never makes
# time.parse_rfc3339_ns fail (which raises in regorus). Check is_string(x) and
# regex.match(_rfc3339, x) before every time.parse_rfc3339_ns(x), or use _timestamps
# (inputs.rego), which checks all those of a claim set at once. (One literal: a regex
# is compiled on every call, and a rule that builds it would cost as much again.)
# regal ignore:line-length
_rfc3339 := `^(?:(?:19|20)[0-9][0-9]-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:19|20)(?:0[48]|[2468][048]|[13579][26])-02-29|2000-02-29)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$`

# _sub_second(ns) is the nanoseconds past the whole second of instant or duration ns,
# in [0, 1e9) also for negative ns (integer arithmetic: exact, unlike a float division).
_sub_second(ns) := ((ns % 1000000000) + 1000000000) % 1000000000

# _whole_seconds(ns) is the duration ns in whole seconds, floored (towards -infinity):
# ns less its _sub_second(ns) (written out: a function call costs an evaluation).
_whole_seconds(ns) := floor((ns - (((ns % 1000000000) + 1000000000) % 1000000000)) / 1000000000)

# _format_instant(ns) is instant ns as RFC 3339 UTC, with any fraction of a second
# written without trailing zeros ("...T10:04:00Z", "...T10:04:00.25Z"). time.format
# alone writes fractions differently in OPA and in regorus.
_format_instant(ns) := time.format(ns) if {
	ns % 1000000000 == 0 # a whole second (the remainder's sign does not matter)
} else := _format_fraction(ns, _sub_second(ns))

# _format_deadline(deadlines) is the earliest of deadlines (instants in ns) as by
# _format_instant, or null when there is none (a whole second needs no other call).
_format_deadline(deadlines) := time.format(deadline) if {
	deadline := min(deadlines)
	deadline % 1000000000 == 0
} else := _format_instant(min(deadlines)) if {
	count(deadlines) > 0
} else := null

# _format_fraction(ns, sub) is instant ns, sub nanoseconds past a whole second, as RFC 3339 UTC.
_format_fraction(ns, sub) := concat("", [
	trim_suffix(time.format(ns - sub), "Z"),
	".",
	trim_right(substring(format_int(sub + 1000000000, 10), 1, 9), "0"),
	"Z",
])

# _show(x) is a printable form of a value that should have been a string (deny messages).
_show(x) := x if is_string(x) else := "(none)" if x == null else := sprintf("(%s)", [type_name(x)])

# _show_field(doc, key) is a printable form of doc[key], for any doc (deny messages).
_show_field(doc, key) := _show(object.get(doc, key, null)) if is_object(doc) else := _show(null)

# _ttl_seconds_value(x) holds for a number of seconds in (0, 2147483647].
_ttl_seconds_value(x) if {
	is_number(x)
	x > 0
	x <= 2147483647
}

# _age_seconds_value(x) holds for a number of seconds in [0, 2147483647].
_age_seconds_value(x) if {
	is_number(x)
	x >= 0
	x <= 2147483647
}
