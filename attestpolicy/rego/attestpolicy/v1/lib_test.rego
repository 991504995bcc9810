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

# _timestamps checks all the timestamps of a claim set with one regex: it must accept
# exactly what _rfc3339 accepts.
test_lib_timestamps_accept_exactly_what_rfc3339_accepts if {
	every timestamp in valid_timestamps {
		data.attestpolicy.v1._timestamps == {"now": time.parse_rfc3339_ns(timestamp)} with input as {"now": timestamp}
	}
	every timestamp in invalid_timestamps {
		not data.attestpolicy.v1._timestamps with input as {"now": timestamp}
	}
	every value in [5, true, ["2026-11-22T10:00:00Z"], {"now": "2026-11-22T10:00:00Z"}] {
		not data.attestpolicy.v1._timestamps with input as {"now": value}
	}
	not data.attestpolicy.v1._timestamps with input as {}
	not data.attestpolicy.v1._timestamps with input as ["2026-11-22T10:00:00Z"]
}

test_lib_timestamps_by_role if {
	doc := {
		"now": "2026-11-22T10:00:00Z",
		"node": {"issued_at": "2026-11-22T09:59:00Z", "expires_at": null},
		"runtime": {"expires_at": "2026-11-22T11:00:00+01:00"},
	}
	data.attestpolicy.v1._timestamps == {
		"now": 1795341600000000000,
		"node_issued_at": 1795341540000000000,
		"runtime_expires_at": 1795341600000000000,
	} with input as doc
	absent := {"now": doc.now, "node": null, "runtime": "not an object"}
	data.attestpolicy.v1._timestamps == {"now": 1795341600000000000} with input as absent
}

test_lib_timestamps_one_invalid_leaves_each_checked_alone if {
	doc := {
		"now": "2026-11-22T10:00:00Z",
		"node": {"issued_at": "2026-02-30T09:59:00Z", "expires_at": null},
		"runtime": {"expires_at": "2026-11-22T11:00:00Z"},
	}
	not data.attestpolicy.v1._timestamps with input as doc
	data.attestpolicy.v1._now_ns == 1795341600000000000 with input as doc
	data.attestpolicy.v1._runtime_expires_ns == 1795345200000000000 with input as doc
	not data.attestpolicy.v1._node_issued_ns with input as doc
}

test_lib_timestamps_parse_to_nanoseconds if {
	data.attestpolicy.v1._now_ns == 1795341600000000000 with input as {"now": "2026-11-22T12:00:00+02:00"}
	data.attestpolicy.v1._now_ns == 1795341600500000000 with input as {"now": "2026-11-22T10:00:00.5Z"}
}

test_lib_show_prints_any_value if {
	data.attestpolicy.v1._show("text") == "text"
	data.attestpolicy.v1._show(null) == "(none)"
	data.attestpolicy.v1._show(7) == "(number)"
	data.attestpolicy.v1._show(["a"]) == "(array)"
	data.attestpolicy.v1._show_field({"a": "x"}, "a") == "x"
	data.attestpolicy.v1._show_field({}, "a") == "(none)"
	data.attestpolicy.v1._show_field("not an object", "a") == "(none)"
}
