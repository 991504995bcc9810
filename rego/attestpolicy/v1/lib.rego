# METADATA
# title: attestpolicy v1
# description: |
#   Default attestation policy. The entrypoint is data.attestpolicy.v1.decision; the
#   configuration is read from data.attestpolicy.config.
#
#   One policy, two engines: it must decide the same in OPA and in regorus. Hence:
#   - The input and the configuration parts a decision reads are validated first
#     (inputs.rego, config.rego); the checks of the other files run only on valid
#     input, so they never meet an ill-typed value.
#   - Every value that may be absent is read through a rule with a default (absent and
#     null are the same), and no negation depends on a possibly undefined reference:
#     OPA moves a call's arguments out of a `not` (so `not f(x)` fails when x is
#     undefined), regorus does not.
#   - Every builtin argument is type-checked first: OPA turns a builtin type error into
#     undefined, regorus raises. Regular expressions use [0-9], not \d.
#   - The cost of a decision does not depend on the size of the configuration: it is
#     read by key (workload by SPIFFE ID, revocations by value, trusted signers by
#     issuer or key id, builders by id), never scanned, and never passed whole to a
#     function (OPA copies function arguments).
package attestpolicy.v1

import rego.v1

# Numbers are written out: 1000000000 is the nanoseconds in a second; 2147483647 is the
# largest number of seconds accepted for a TTL, an age or a skew (about 68 years), which
# keeps every instant the policy computes inside the int64 nanosecond range.

# RFC 3339 with an explicit offset, at most nanosecond precision, no leap second, on a
# real calendar day of the years 1900-2099 (attestpolicy.claims uses the same pattern).
# A string that matches never makes time.parse_rfc3339_ns fail.
# regal ignore:line-length
_rfc3339 := `^(?:(?:19|20)[0-9][0-9]-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:19|20)(?:0[48]|[2468][048]|[13579][26])-02-29|2000-02-29)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$`

# _sub_second(ns) is the nanoseconds past the whole second of instant or duration ns,
# in [0, 1e9) also for negative ns (integer arithmetic: exact, unlike a float division).
_sub_second(ns) := ((ns % 1000000000) + 1000000000) % 1000000000

# _whole_seconds(ns) is the duration ns in whole seconds, floored (towards -infinity).
_whole_seconds(ns) := floor((ns - _sub_second(ns)) / 1000000000)

# _format_instant(ns) is instant ns as RFC 3339 UTC, with any fraction of a second
# written without trailing zeros ("...T10:04:00Z", "...T10:04:00.25Z"). time.format
# alone writes fractions differently in OPA and in regorus.
_format_instant(ns) := time.format(ns) if {
	_sub_second(ns) == 0
} else := concat("", [
	trim_suffix(time.format(ns - _sub_second(ns)), "Z"),
	".",
	trim_right(substring(format_int(_sub_second(ns) + 1000000000, 10), 1, 9), "0"),
	"Z",
])

# _show(x) is a printable form of a value that may be null (deny messages).
_show(x) := x if is_string(x) else := "(none)" if x == null else := sprintf("(%s)", [type_name(x)])

# _seconds(x) holds for an integral number of seconds in [0, 2147483647]. (The range is
# checked first: OPA's floor is inexact on huge numbers.)
_seconds(x) if {
	is_number(x)
	x >= 0
	x <= 2147483647
	floor(x) == x
}

# _positive_seconds(x) holds for an integral number of seconds in (0, 2147483647].
_positive_seconds(x) if {
	_seconds(x)
	x > 0
}

# --- kinds of values -----------------------------------------------------------------

# What each kind of value must be, for messages.
_kind_text := {
	"text": "a string of 1 to 4096 characters",
	"bool": "a boolean",
	"timestamp": "an RFC 3339 timestamp with an offset (years 1900-2099)",
	"digest": "a sha256 digest (sha256: and 64 lowercase hex digits)",
	"spiffe_id": "a SPIFFE ID (spiffe://trust-domain/path, at most 2048 characters)",
	"node_kind": "a node kind matching ^[a-z][a-z0-9_]{0,63}$",
	"ttl": "an integer > 0 and <= 2147483647",
	"signatures": "an array of at most 256 signatures",
	"digests": "an array of at most 4096 sha256 digests",
	"measurements": "an object of at most 1024 measurements",
	"classes": "an array of evidence classes (image, provenance, node, runtime)",
	"node_kinds": "an array of at most 64 node kinds",
	"object": "an object",
}

# The JSON type of the values of each kind ("?" kinds also admit null).
_kind_type := {
	"text": "string",
	"bool": "boolean",
	"timestamp": "string",
	"digest": "string",
	"spiffe_id": "string",
	"node_kind": "string",
	"ttl": "number",
	"signatures": "array",
	"digests": "array",
	"measurements": "object",
	"classes": "array",
	"node_kinds": "array",
	"object": "object",
}

# The kinds whose values are checked beyond their type by _valid_value (a function
# call per value costs more than a lookup, so the others are not called).
_value_kinds := {"timestamp", "digest", "spiffe_id", "node_kind", "ttl", "signatures", "digests", "measurements", "classes", "node_kinds"}

# _valid(kind, x) holds when x is a valid value of kind; a kind ending in "?" also
# admits null (absent). _valid_value(kind, x) is the same without "?" (OPA refuses a
# recursive function). Objects are checked field by field (inputs.rego, config.rego).
_valid(kind, x) if {
	endswith(kind, "?")
	x == null
}

_valid(kind, x) if _valid_value(trim_suffix(kind, "?"), x)

_valid_value("text", x) if {
	is_string(x)
	_text_length(x)
}

_valid_value("bool", x) if is_boolean(x)

_valid_value("timestamp", x) if {
	is_string(x)
	regex.match(_rfc3339, x)
}

_valid_value("digest", x) if _digest(x)

# _digest_list(digests) holds when every element of array digests is a sha256 digest:
# one regex over their JSON array (cheaper than a check per element, for long lists).
_digest_list(digests) if regex.match(
	`^\[(?:"sha256:[0-9a-f]{64}"(?:,"sha256:[0-9a-f]{64}")*)?\]$`,
	json.marshal(digests),
)

# _digest(x) holds for "sha256:" and 64 lowercase hex digits: trimming the hex digits
# off the end leaves exactly the prefix (no regex: one is compiled on every call).
_digest(x) if {
	is_string(x)
	count(x) == 71
	trim_right(x, "0123456789abcdef") == "sha256:"
}

_valid_value("spiffe_id", x) if {
	is_string(x)
	count(x) <= 2048
	regex.match(`^spiffe://[a-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$`, x)
	not regex.match(`/\.\.?(?:/|$)`, x)
}

_valid_value("node_kind", x) if _node_kind(x)

_node_kind(x) if {
	is_string(x)
	regex.match(`^[a-z][a-z0-9_]{0,63}$`, x)
}

_valid_value("ttl", x) if _positive_seconds(x)

_valid_value("signatures", x) if {
	is_array(x)
	count(x) <= 256
}

_valid_value("digests", x) if {
	is_array(x)
	count(x) <= 4096
}

_valid_value("measurements", x) if {
	is_object(x)
	count(x) <= 1024
}

_valid_value("classes", x) if {
	is_array(x)
	every class in x {
		class in {"image", "provenance", "node", "runtime"}
	}
}

_valid_value("node_kinds", x) if {
	is_array(x)
	count(x) <= 64
	every kind in x {
		_node_kind(kind)
	}
}


# _hex(x) holds for a non-empty string of at most 4096 lowercase hex digits, in pairs.
_hex(x) if {
	is_string(x)
	count(x) > 0
	count(x) <= 4096
	count(x) % 2 == 0
	trim_right(x, "0123456789abcdef") == ""
}

# _problem(prefix, name, kind, x) is what is wrong with field name of kind (of the
# document at prefix) when its value is x, and undefined when x is a valid value. The
# common cases are decided without calling _valid.
_problem(prefix, name, kind, x) := sprintf("%s.%s: is required", [prefix, name]) if {
	x == null
	not endswith(kind, "?")
} else := null if {
	x == null
} else := _type_problem(prefix, name, trim_suffix(kind, "?"), x)

_type_problem(prefix, name, kind, x) := sprintf("%s.%s: must be %s", [prefix, name, _kind_text[kind]]) if {
	type_name(x) != _kind_type[kind]
} else := sprintf("%s.%s: must be %s", [prefix, name, _kind_text[kind]]) if {
	kind == "text"
	not _text_length(x)
} else := sprintf("%s.%s: must be %s", [prefix, name, _kind_text[kind]]) if {
	_value_kinds[kind]
	not _valid_value(kind, x)
} else := null

# _text_length(x) holds for a string of 1 to 4096 characters (code points, as in Python
# and OPA). regorus's count() of a string counts UTF-16 code units, never fewer than the
# code points: so count() decides, and only a longer string is counted again, by
# split(x, ""), which gives code points in both engines.
_text_length(x) if {
	count(x) > 0
	count(x) <= 4096
}

_text_length(x) if {
	count(x) > 4096
	count(split(x, "")) <= 4096
}

# _length(x) is the number of characters (code points) of string x.
_length(x) := count(split(x, ""))

# _field(doc, key) is doc[key], or null when doc is not an object or has no such key.
_field(doc, key) := object.get(doc, key, null) if is_object(doc) else := null
