package attestpolicy.v1_test

import rego.v1

test_lib_rfc3339_accepts_valid_timestamps if {
	every timestamp in [
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
	] {
		regex.match(data.attestpolicy.v1._rfc3339, timestamp)
	}
}

test_lib_rfc3339_rejects_malformed_or_impossible_timestamps if {
	every timestamp in [
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
	] {
		not regex.match(data.attestpolicy.v1._rfc3339, timestamp)
	}
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
