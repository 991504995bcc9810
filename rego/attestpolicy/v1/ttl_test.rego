package attestpolicy.v1_test

import rego.v1

ttl_of(doc, cfg) := [decision.ttl_seconds, decision.ttl_bound_by] if {
	decision := decide_config(doc, cfg)
	allowed(decision)
}

test_ttl_default_when_no_request if {
	ttl_of(claims, config) == [900, "default"]
	ttl_of(without(claims, ["request", "requested_ttl_seconds"]), config) == [900, "default"]
}

test_ttl_request_replaces_default if {
	ttl_of(with_value(claims, ["request", "requested_ttl_seconds"], 1200), config) == [1200, "request"]
	ttl_of(with_value(claims, ["request", "requested_ttl_seconds"], 600), config) == [600, "request"]
}

test_ttl_bound_by_audience if {
	ttl_of(with_value(claims, ["request", "requested_ttl_seconds"], 7200), config) == [1800, "audience"]
}

test_ttl_bound_by_workload if {
	cfg := workload_with("max_ttl_seconds", 300)
	ttl_of(claims, cfg) == [300, "workload"]
}

test_ttl_bound_by_evidence_expiry if {
	ttl_of(with_value(claims, ["runtime", "expires_at"], "2026-11-22T10:05:00Z"), config) == [300, "evidence_expiry"]
	ttl_of(with_value(claims, ["node", "expires_at"], "2026-11-22T10:02:00Z"), config) == [120, "evidence_expiry"]
}

test_ttl_evidence_expiry_is_the_earliest_expiry if {
	doc := json.patch(claims, [
		{"op": "add", "path": ["node", "expires_at"], "value": "2026-11-22T10:03:00Z"},
		{"op": "add", "path": ["runtime", "expires_at"], "value": "2026-11-22T10:02:00Z"},
	])
	ttl_of(doc, config) == [120, "evidence_expiry"]
}

test_ttl_is_floored_to_whole_seconds if {
	ttl_of(with_value(claims, ["runtime", "expires_at"], "2026-11-22T10:05:00.999Z"), config) == [300, "evidence_expiry"]
	ttl_of(with_value(claims, ["now"], "2026-11-22T10:00:00.5Z"), with_value(config, ["limits", "default_ttl_seconds"], 5000)) == [1800, "audience"]
	ttl_of(with_value(claims, ["now"], "2026-11-22T09:59:59.5Z"), config) == [900, "default"]
}

test_ttl_tie_goes_to_the_first_term if {
	ttl_of(with_value(claims, ["request", "requested_ttl_seconds"], 1800), config) == [1800, "request"]
	cfg := workload_with("max_ttl_seconds", 1800)
	ttl_of(with_value(claims, ["request", "requested_ttl_seconds"], 5000), cfg) == [1800, "audience"]
	ttl_of(with_value(claims, ["runtime", "expires_at"], "2026-11-22T10:15:00Z"), config) == [900, "default"]
	ttl_of(with_value(claims, ["runtime", "expires_at"], "2026-11-22T10:30:00.5Z"), with_value(config, ["limits", "default_ttl_seconds"], 1800)) == [1800, "default"]
}

test_ttl_too_short if {
	decision := decide(with_value(claims, ["runtime", "expires_at"], "2026-11-22T10:00:59Z"))
	denied(decision, {"ttl.too_short"})
	decision.reasons == [{
		"code": "ttl.too_short",
		"message": "TTL of 59 seconds (bound by evidence_expiry) is below limits.min_ttl_seconds",
	}]
	denied(decide(with_value(claims, ["request", "requested_ttl_seconds"], 30)), {"ttl.too_short"})
	ttl_of(with_value(claims, ["request", "requested_ttl_seconds"], 60), config) == [60, "request"]
}

test_ttl_too_short_message_for_an_expired_evidence if {
	# A negative TTL is written as OPA writes it ("-1", where regorus's %d gives "--1").
	decision := decide(with_value(claims, ["runtime", "expires_at"], "2026-11-22T09:59:59Z"))
	has_reason(decision, "ttl.too_short", "TTL of -1 seconds (bound by evidence_expiry) is below limits.min_ttl_seconds")
}

test_ttl_exactly_minimum_is_allowed if {
	ttl_of(with_value(claims, ["runtime", "expires_at"], "2026-11-22T10:01:00Z"), config) == [60, "evidence_expiry"]
	ttl_of(with_value(claims, ["request", "requested_ttl_seconds"], 60), config) == [60, "request"]
}

test_valid_until_from_node_age if {
	decide(claims).valid_until == "2026-11-22T10:04:00Z"
}

test_valid_until_from_evidence_expiry if {
	doc := json.patch(claims, [
		{"op": "add", "path": ["node", "issued_at"], "value": "2026-11-22T10:00:00Z"},
		{"op": "add", "path": ["runtime", "expires_at"], "value": "2026-11-22T10:03:00Z"},
	])
	decision := decide(doc)
	decision.valid_until == "2026-11-22T10:02:00Z"
	decision.ttl_seconds == 180
	# At valid_until the TTL is exactly the minimum: still allowed; one second later, not.
	ttl_of(with_value(doc, ["now"], "2026-11-22T10:02:00Z"), config) == [60, "evidence_expiry"]
	denied(decide(with_value(doc, ["now"], "2026-11-22T10:02:01Z")), {"ttl.too_short"})
}

test_valid_until_keeps_fractions_without_trailing_zeros if {
	decide(with_value(claims, ["node", "issued_at"], "2026-11-22T09:59:00.75Z")).valid_until == "2026-11-22T10:04:00.75Z"
	decide(with_value(claims, ["node", "issued_at"], "2026-11-22T09:59:00.000001Z")).valid_until == "2026-11-22T10:04:00.000001Z"
	decide(with_value(claims, ["node", "issued_at"], "2026-11-22T09:59:00.120000000Z")).valid_until == "2026-11-22T10:04:00.12Z"
	doc := with_value(claims, ["runtime", "expires_at"], "2026-11-22T10:03:00.5Z")
	decide(doc).valid_until == "2026-11-22T10:02:00.5Z"
	decide(doc).ttl_seconds == 180
}

test_valid_until_from_the_earlier_deadline if {
	# The node goes stale at 10:04:00; the runtime expiry less min_ttl is 10:03:30.
	decide(with_value(claims, ["runtime", "expires_at"], "2026-11-22T10:04:30Z")).valid_until == "2026-11-22T10:03:30Z"
}

test_ttl_exact_for_long_expiries_with_nanoseconds if {
	cfg := json.patch(config, [
		{"op": "add", "path": ["limits", "default_ttl_seconds"], "value": 200000000},
		{"op": "add", "path": ["audiences", "vault", "max_ttl_seconds"], "value": 200000000},
		{"op": "add", "path": ["workloads", spiffe_id, "max_ttl_seconds"], "value": 200000000},
	])
	# 100000000.999999999 s ahead: a float division would round it up to 100000001.
	doc := with_value(claims, ["runtime", "expires_at"], "2030-01-22T19:46:40.999999999Z")
	ttl_of(doc, cfg) == [100000000, "evidence_expiry"]
}

test_valid_until_before_1970 if {
	doc := json.patch(claims, [
		{"op": "add", "path": ["now"], "value": "1969-12-31T23:59:59.5Z"},
		{"op": "add", "path": ["node", "issued_at"], "value": "1969-12-31T23:59:00.25Z"},
		{"op": "add", "path": ["runtime", "expires_at"], "value": "1970-01-01T01:00:00Z"},
	])
	decision := decide(doc)
	decision.valid_until == "1970-01-01T00:04:00.25Z"
	decision.ttl_seconds == 900
}

test_valid_until_null_without_node_or_expiry if {
	cfg := workload_with("require", ["image", "provenance", "runtime"])
	doc := with_value(without(claims, ["node"]), ["runtime", "expires_at"], null)
	decision := decide_config(doc, cfg)
	allowed(decision)
	decision.valid_until == null
}

test_ttl_default_when_the_request_names_none_absent_or_null if {
	every doc in [
		without(claims, ["request", "requested_ttl_seconds"]),
		with_value(claims, ["request", "requested_ttl_seconds"], null),
	] {
		ttl_of(doc, config) == [900, "default"]
	}
}
