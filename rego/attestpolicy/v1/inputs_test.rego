package attestpolicy.v1_test

import rego.v1

# invalid_input(message) is the reasons of a deny for one input problem.
invalid_input(message) := [{"code": "input.invalid", "message": message}]

test_input_now_missing if {
	decide(without(claims, ["now"])).reasons == invalid_input("input.now: is required")
	decide(with_value(claims, ["now"], null)).reasons == invalid_input("input.now: is required")
}

test_input_now_malformed_is_a_deny_not_an_engine_error if {
	every now in [1795341600, "2026-02-30T10:00:00Z", "2026-11-22T25:00:00Z", "yesterday", "2026-11-22T10:00:00"] {
		message := "input.now: must be an RFC 3339 timestamp with an offset (years 1900-2099)"
		decide(with_value(claims, ["now"], now)).reasons == invalid_input(message)
	}
}

test_input_now_with_offset_and_fraction if {
	allowed(decide(with_value(claims, ["now"], "2026-11-22T11:00:00+01:00")))
	decide(with_value(claims, ["now"], "2026-11-22T10:00:00.25Z")).ttl_seconds == 900
}

test_input_not_an_object if {
	every value in [["x"], "x", 1, null] {
		decision := data.attestpolicy.v1.decision with input as value with data.attestpolicy.config as config
		has_reason(decision, "input.invalid", "input: must be an object")
	}
}

test_input_unknown_fields if {
	decide(with_value(claims, ["tenant"], "acme")).reasons == invalid_input("input.tenant: unknown field")
	decide(with_value(claims, ["node", "pcrs"], {})).reasons == invalid_input("input.node.pcrs: unknown field")
	decide(with_value(claims, ["request", "scope"], "x")).reasons == invalid_input("input.request.scope: unknown field")
}

test_input_spiffe_id_missing_or_ill_typed if {
	decide(without(claims, ["subject", "spiffe_id"])).reasons == invalid_input("input.subject.spiffe_id: is required")
	decide(with_value(claims, ["subject"], spiffe_id)).reasons == invalid_input("input.subject: must be an object")
	every bad in [[spiffe_id], "spiffe://acme.test/ns/shop/sa/api/", "spiffe://acme.test/ns/../sa/api", "spiffe://ACME/x"] {
		message := "input.subject.spiffe_id: must be a SPIFFE ID (spiffe://trust-domain/path, at most 2048 characters)"
		decide(with_value(claims, ["subject", "spiffe_id"], bad)).reasons == invalid_input(message)
	}
}

test_input_audience_missing_or_ill_typed if {
	decide(without(claims, ["request", "audience"])).reasons == invalid_input("input.request.audience: is required")
	every bad in [5, "", ["vault"]] {
		message := "input.request.audience: must be a string of 1 to 4096 characters"
		decide(with_value(claims, ["request", "audience"], bad)).reasons == invalid_input(message)
	}
}

test_input_requested_ttl_ill_typed if {
	every ttl in ["600", 0, -5, true, [600], 600.5, 2147483646.9, 2147483648, 1e300] {
		message := "input.request.requested_ttl_seconds: must be an integer > 0 and <= 2147483647"
		decide(with_value(claims, ["request", "requested_ttl_seconds"], ttl)).reasons == invalid_input(message)
	}
}

test_input_requested_ttl_integral_float_is_an_integer if {
	decision := decide(with_value(claims, ["request", "requested_ttl_seconds"], 600.0))
	allowed(decision)
	decision.ttl_seconds == 600
	decision.ttl_bound_by == "request"
}

test_input_evidence_class_not_an_object if {
	every class in ["image", "provenance", "node", "runtime"] {
		message := sprintf("input.%s: must be an object", [class])
		decide(with_value(claims, [class], "forged")).reasons == invalid_input(message)
	}
}

test_input_absent_and_null_evidence_are_the_same if {
	cfg := workload_with("require", ["image", "provenance", "runtime"])
	allowed(decide_config(with_value(claims, ["node"], null), cfg))
	allowed(decide_config(without(claims, ["node"]), cfg))
	decide(with_value(claims, ["node"], null)) == decide(without(claims, ["node"]))
	denied(decide(without(claims, ["node"])), {"evidence.missing"})
}

test_input_absent_and_null_optional_fields_are_the_same if {
	every path in [
		["request", "requested_ttl_seconds"], ["image", "signatures"], ["image", "digest"],
		["provenance", "builder_id"], ["provenance", "source_repo"], ["provenance", "subject_digests"],
		["provenance", "predicate_type"], ["node", "expires_at"], ["node", "measurements"],
		["runtime", "namespace"], ["runtime", "service_account"], ["runtime", "pod"],
		["runtime", "image_digest"], ["runtime", "expires_at"],
	] {
		decide(with_value(claims, path, null)) == decide(without(claims, path))
	}
}

test_input_node_required_fields if {
	decision := decide(json.patch(claims, [
		{"op": "add", "path": ["node", "kind"], "value": 1},
		{"op": "remove", "path": ["node", "id"]},
	]))
	denied(decision, {"input.invalid"})
	has_reason(decision, "input.invalid", "input.node.kind: must be a node kind matching ^[a-z][a-z0-9_]{0,63}$")
	has_reason(decision, "input.invalid", "input.node.id: is required")
	count(decision.reasons) == 2
}

test_input_node_issued_at_invalid if {
	decide(with_value(claims, ["node", "issued_at"], null)).reasons == invalid_input("input.node.issued_at: is required")
	every issued_at in [1795341540, "2026-11-22T09:59:00", "2026-02-31T09:59:00Z"] {
		message := "input.node.issued_at: must be an RFC 3339 timestamp with an offset (years 1900-2099)"
		decide(with_value(claims, ["node", "issued_at"], issued_at)).reasons == invalid_input(message)
	}
}

test_input_expires_at_invalid if {
	message := "must be an RFC 3339 timestamp with an offset (years 1900-2099)"
	node := decide(with_value(claims, ["node", "expires_at"], "soon"))
	node.reasons == invalid_input(sprintf("input.node.expires_at: %s", [message]))
	runtime := decide(with_value(claims, ["runtime", "expires_at"], 1795345200))
	runtime.reasons == invalid_input(sprintf("input.runtime.expires_at: %s", [message]))
}

test_input_null_expiries_are_absent if {
	decision := decide(with_value(claims, ["runtime", "expires_at"], null))
	allowed(decision)
	decision.ttl_bound_by == "default"
}

test_input_runtime_fields_ill_typed if {
	digest_message := "input.runtime.image_digest: must be a sha256 digest (sha256: and 64 lowercase hex digits)"
	decide(with_value(claims, ["runtime", "image_digest"], 42)).reasons == invalid_input(digest_message)
	decide(with_value(claims, ["runtime", "pod"], 7)).reasons == invalid_input("input.runtime.pod: must be a string of 1 to 4096 characters")
	decide(with_value(claims, ["runtime", "verified"], "yes")).reasons == invalid_input("input.runtime.verified: must be a boolean")
}

test_input_measurements_ill_typed if {
	hex := "input.node.measurements.pcr.sha256.0: must be 2 to 4096 lowercase hex digits, in pairs"
	every value in ["AA", "abc", "", 5, null] {
		decide(with_value(claims, ["node", "measurements", "pcr.sha256.0"], value)).reasons == invalid_input(hex)
	}
	decide(with_value(claims, ["node", "measurements"], ["aa"])).reasons == invalid_input("input.node.measurements: must be an object of at most 1024 measurements")
	empty_name := "input.node.measurements: a name must be a string of 1 to 4096 characters (0 characters given)"
	decide(with_value(claims, ["node", "measurements", ""], "aa")).reasons == invalid_input(empty_name)
}

test_input_provenance_fields_ill_typed if {
	message := "input.provenance.subject_digests[1]: must be a sha256 digest (sha256: and 64 lowercase hex digits)"
	decide(with_value(claims, ["provenance", "subject_digests"], [digest, "sha256:00"])).reasons == invalid_input(message)
	decide(with_value(claims, ["provenance", "verified"], null)).reasons == invalid_input("input.provenance.verified: is required")
}

test_input_collection_size_limits if {
	many := [{"verified": false} | some _ in numbers.range(1, 257)]
	decide(with_value(claims, ["image", "signatures"], many)).reasons == invalid_input("input.image.signatures: must be an array of at most 256 signatures")
	enough := [{"verified": false} | some _ in numbers.range(1, 256)]
	not "input.invalid" in codes(decide(with_value(claims, ["image", "signatures"], enough)))
}

test_input_invalid_hides_the_other_checks if {
	# An unverified node would be node.unverified; with an ill-typed field beside it, only input.invalid.
	doc := json.patch(claims, [
		{"op": "add", "path": ["node", "verified"], "value": false},
		{"op": "add", "path": ["runtime", "pod"], "value": 1},
	])
	denied(decide(doc), {"input.invalid"})
}

test_input_text_length_counts_characters_not_utf16_units if {
	allowed(decide(with_value(claims, ["node", "id"], long_astral(2049))))
	allowed(decide(with_value(claims, ["node", "measurements", long_astral(4096)], "aa")))
	decide(with_value(claims, ["node", "id"], long_astral(4097))).reasons == invalid_input("input.node.id: must be a string of 1 to 4096 characters")
	message := "input.node.measurements: a name must be a string of 1 to 4096 characters (4097 characters given)"
	decide(with_value(claims, ["node", "measurements", long_astral(4097)], "aa")).reasons == invalid_input(message)
}
