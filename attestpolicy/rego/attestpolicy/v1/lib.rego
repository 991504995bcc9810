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
package attestpolicy.v1

import rego.v1

_ns_per_second := 1000000000

# The largest number of seconds accepted for a TTL, an age or a skew (about 68 years,
# as in the claim set): it keeps every instant the policy computes inside the int64
# nanosecond range of time.format.
_max_seconds := 2147483647

# RFC 3339 with an explicit offset, at most nanosecond precision, no leap second, on a
# real calendar day (leap years included) of the years 1900-2099, well inside the int64
# nanosecond range of time.parse_rfc3339_ns and time.format (up to 2262). A string that matches never makes
# time.parse_rfc3339_ns fail (which raises in regorus). Check is_string(x) and
# regex.match(_rfc3339, x) before every time.parse_rfc3339_ns(x). (One literal: a
# regex is compiled on every call, and a rule that builds it would cost as much again.)
# regal ignore:line-length
_rfc3339 := `^(?:(?:19|20)[0-9][0-9]-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:19|20)(?:0[48]|[2468][048]|[13579][26])-02-29|2000-02-29)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$`

# _sub_second(ns) is the nanoseconds past the whole second of instant or duration ns,
# in [0, 1e9) also for negative ns (integer arithmetic: exact, unlike a float division).
_sub_second(ns) := ((ns % _ns_per_second) + _ns_per_second) % _ns_per_second

# _whole_seconds(ns) is the duration ns in whole seconds, floored (towards -infinity).
_whole_seconds(ns) := floor((ns - _sub_second(ns)) / _ns_per_second)

# _format_instant(ns) is instant ns as RFC 3339 UTC, with any fraction of a second
# written without trailing zeros ("...T10:04:00Z", "...T10:04:00.25Z"). time.format
# alone writes fractions differently in OPA and in regorus.
_format_instant(ns) := time.format(ns) if {
	_sub_second(ns) == 0
} else := concat("", [
	trim_suffix(time.format(ns - _sub_second(ns)), "Z"),
	".",
	trim_right(substring(format_int(_sub_second(ns) + _ns_per_second, 10), 1, 9), "0"),
	"Z",
])

# _show(x) is a printable form of a value that should have been a string (deny messages).
_show(x) := x if is_string(x) else := "(none)" if x == null else := sprintf("(%s)", [type_name(x)])

# _show_field(doc, key) is a printable form of doc[key], for any doc (deny messages).
_show_field(doc, key) := _show(object.get(doc, key, null)) if is_object(doc) else := _show(null)

# _ttl_seconds_value(x) holds for a number of seconds in (0, _max_seconds].
_ttl_seconds_value(x) if {
	is_number(x)
	x > 0
	x <= _max_seconds
}

# _age_seconds_value(x) holds for a number of seconds in [0, _max_seconds].
_age_seconds_value(x) if {
	is_number(x)
	x >= 0
	x <= _max_seconds
}
