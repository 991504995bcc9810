package attestpolicy.v1_test

import rego.v1

# Timestamps that _rfc3339 accepts, and strings it rejects.
valid_timestamps := [
	"2026-11-22T10:00:00Z",
	"2026-11-22T10:00:00.5Z",
	"2026-11-22T10:00:00.123456789Z",
	"2026-11-22T12:00:00+02:00",
	"2026-11-22T04:30:00-05:30",
	"2024-02-29T00:00:00Z",
	"2000-02-29T00:00:00Z",
	"2026-01-31T23:59:59Z",
	"2026-04-30T00:00:00Z",
	"1900-01-01T00:00:00Z",
	"2099-12-31T23:59:59Z",
	"2096-02-29T00:00:00Z",
]

invalid_timestamps := [
	"",
	"2026-11-22",
	"2026-11-22T10:00:00",
	"2026-11-22 10:00:00Z",
	"2026-11-22t10:00:00z",
	"2026-11-22T10:00Z",
	"2026-11-22T10:00:00.Z",
	"2026-11-22T10:00:00.1234567890Z",
	"2026-13-01T00:00:00Z",
	"2026-00-01T00:00:00Z",
	"2026-04-31T00:00:00Z",
	"2026-02-30T00:00:00Z",
	"2026-02-29T00:00:00Z",
	"2100-02-29T00:00:00Z",
	"1900-02-29T00:00:00Z",
	"2026-11-22T24:00:00Z",
	"2026-11-22T10:60:00Z",
	"2026-11-22T10:00:60Z",
	"2026-11-22T10:00:00+24:00",
	"1899-12-31T23:59:59Z",
	"2100-01-01T00:00:00Z",
	"2300-01-01T00:00:00Z",
	"٢٠٢٦-11-22T10:00:00Z",
	"202٦-11-22T10:00:00Z",
	"2026-11-22T10:00:0٠Z",
	" 2026-11-22T10:00:00Z",
	"2026-11-22T10:00:00Z\n",
	"2026-11-22T10:00:00Z\",\"2026-11-22T10:00:00Z",
	"2026-11-22T10:00:00Z\"]",
]

test_lib_rfc3339_accepts_valid_timestamps if {
	every timestamp in valid_timestamps {
		regex.match(data.attestpolicy.v1._rfc3339, timestamp)
	}
}

test_lib_rfc3339_rejects_malformed_or_impossible_timestamps if {
	every timestamp in invalid_timestamps {
		not regex.match(data.attestpolicy.v1._rfc3339, timestamp)
	}
}

test_lib_timestamps_parse_to_nanoseconds if {
	data.attestpolicy.v1._now_ns == 1795341600000000000 with input as {"now": "2026-11-22T12:00:00+02:00"}
	data.attestpolicy.v1._now_ns == 1795341600500000000 with input as {"now": "2026-11-22T10:00:00.5Z"}
	not data.attestpolicy.v1._now_ns with input as {"now": "2026-02-30T10:00:00Z"}
	not data.attestpolicy.v1._now_ns with input as {}
}

# Values of each kind that _valid accepts and rejects (the claim set's contract).
kind_cases := {
	"text": [
		["a", "é", "🔐", long_text(4096), long_astral(4096)],
		[null, "", long_text(4097), long_astral(4097), 5, true, ["a"], {"a": 1}],
	],
	"bool": [[true, false], [null, "true", 1, 0]],
	"timestamp": [valid_timestamps, array.concat(invalid_timestamps, [null, 1795341600, ["2026-11-22T10:00:00Z"]])],
	"digest": [
		["sha256:58639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fe54"],
		[
			null, "sha512:58639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fe54",
			"sha256:58639897B0B414A46C61ACBF3A44D519A72D03C1060ABEF75CDB5CF5FCA9FE54",
			"sha256:58639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fe5",
			"sha256:58639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fe544",
			"sha256:58639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fe5g",
			"sha256:58639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fé4", 7,
		],
	],
	"spiffe_id": [
		["spiffe://acme.test", "spiffe://acme.test/ns/shop/sa/api", "spiffe://a-b_c.d/x.y_Z-1/...a"],
		[
			null, "spiffe://", "spiffe://acme.test/", "spiffe://acme.test//x", "spiffe://Acme.test/x",
			"spiffe://acme.test/./x", "spiffe://acme.test/x/..", "spiffe://acme.test/x y",
			"https://acme.test/x", "spiffe://acme.test/x\n", "SPIFFE://acme.test", 5,
		],
	],
	"node_kind": [["tpm", "aws_iid", "a", "k8s_psat"], [null, "", "TPM", "1tpm", "tpm-2", "tpm\n", 1]],
	"ttl": [[1, 600, 2147483647, 600.0], [null, 0, -1, 0.5, 600.5, 2147483648, 1e30, "600", true]],
	"ttl?": [[null, 1, 600.0], [0, "600"]],
	"signatures": [[[], [{"verified": true}]], [null, {}, "x"]],
	"classes": [[[], ["image", "node"]], [null, ["tags"], "image", [1]]],
}

# long_text(n) is a string of n characters; long_astral(n) of n characters outside the
# Basic Multilingual Plane (two UTF-16 code units each).
long_text(n) := concat("", ["a" | some _ in numbers.range(1, n)])

long_astral(n) := concat("", ["🔐" | some _ in numbers.range(1, n)])

test_lib_length_counts_code_points if {
	data.attestpolicy.v1._length("a🔐é") == 3
	data.attestpolicy.v1._length("") == 0
}

test_lib_valid_accepts_and_rejects_each_kind if {
	every kind, cases in kind_cases {
		[good, bad] := cases
		every value in good {
			data.attestpolicy.v1._valid(kind, value)
		}
		every value in bad {
			not data.attestpolicy.v1._valid(kind, value)
		}
	}
}

test_lib_hex_is_lowercase_pairs if {
	every value in ["00", "ab12", "ffffffff"] {
		data.attestpolicy.v1._hex(value)
	}
	every value in [null, "", "a", "abc", "AB", "0x00", "zz", 12] {
		not data.attestpolicy.v1._hex(value)
	}
}

test_lib_seconds_are_integral_and_in_range if {
	every value in [0, 1, 2147483647, 60.0] {
		data.attestpolicy.v1._seconds(value)
	}
	every value in [-1, 0.5, 2147483648, 1e300, null, "60", true] {
		not data.attestpolicy.v1._seconds(value)
	}
	not data.attestpolicy.v1._positive_seconds(0)
}

test_lib_format_instant_without_trailing_zeros if {
	data.attestpolicy.v1._format_instant(1795341600000000000) == "2026-11-22T10:00:00Z"
	data.attestpolicy.v1._format_instant(1795341600250000000) == "2026-11-22T10:00:00.25Z"
	data.attestpolicy.v1._format_instant(1795341600000000001) == "2026-11-22T10:00:00.000000001Z"
	data.attestpolicy.v1._format_instant(-1) == "1969-12-31T23:59:59.999999999Z"
}

test_lib_show_prints_any_value if {
	data.attestpolicy.v1._show("text") == "text"
	data.attestpolicy.v1._show(null) == "(none)"
	data.attestpolicy.v1._show(7) == "(number)"
	data.attestpolicy.v1._show(["a"]) == "(array)"
}

test_lib_field_reads_absent_as_null if {
	data.attestpolicy.v1._field({"a": "x"}, "a") == "x"
	data.attestpolicy.v1._field({}, "a") == null
	data.attestpolicy.v1._field({"a": null}, "a") == null
	data.attestpolicy.v1._field("not an object", "a") == null
	data.attestpolicy.v1._field(null, "a") == null
}

# _timestamps_valid checks all the timestamps of a claim set with one regex: it must
# accept exactly what _rfc3339 accepts, alone or with others.
test_lib_timestamps_valid_accepts_exactly_what_rfc3339_accepts if {
	every timestamp in valid_timestamps {
		data.attestpolicy.v1._timestamps_valid with input as {"now": timestamp}
		data.attestpolicy.v1._timestamps_valid with input as {"now": timestamp, "node": {"issued_at": timestamp, "expires_at": null}}
	}
	every timestamp in invalid_timestamps {
		not data.attestpolicy.v1._timestamps_valid with input as {"now": timestamp}
		not data.attestpolicy.v1._timestamps_valid with input as {"now": "2026-11-22T10:00:00Z", "runtime": {"expires_at": timestamp}}
	}
	every value in [5, true, ["2026-11-22T10:00:00Z"], {"now": "2026-11-22T10:00:00Z"}] {
		not data.attestpolicy.v1._timestamps_valid with input as {"now": value}
	}
	not data.attestpolicy.v1._timestamps_valid with input as {}
}

test_lib_timestamps_parse_alone_when_one_is_invalid if {
	doc := {
		"now": "2026-11-22T10:00:00Z",
		"node": {"issued_at": "2026-02-30T09:59:00Z", "expires_at": null},
		"runtime": {"expires_at": "2026-11-22T11:00:00Z"},
	}
	not data.attestpolicy.v1._timestamps_valid with input as doc
	data.attestpolicy.v1._now_ns == 1795341600000000000 with input as doc
	data.attestpolicy.v1._runtime_expires_ns == 1795345200000000000 with input as doc
	not data.attestpolicy.v1._node_issued_ns with input as doc
}

test_lib_digest_list if {
	data.attestpolicy.v1._digest_list([])
	data.attestpolicy.v1._digest_list([digest, other_digest])
	every bad in [[digest, "sha256:00"], [digest, null], [5], [concat("", [digest, " "])], [upper(digest)]] {
		not data.attestpolicy.v1._digest_list(bad)
	}
}
