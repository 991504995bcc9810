package attestpolicy.v1_test

import rego.v1

test_runtime_unverified if {
	decision := decide(with_value(claims, ["runtime", "verified"], false))
	denied(decision, {"runtime.unverified"})
	has_reason(decision, "runtime.unverified", "runtime evidence is not verified")
	every verified in [null, 1] {
		denied(decide(with_value(claims, ["runtime", "verified"], verified)), {"input.invalid"})
	}
}

test_runtime_namespace_mismatch if {
	decision := decide(with_value(claims, ["runtime", "namespace"], "default"))
	denied(decision, {"runtime.namespace_mismatch"})
	has_reason(decision, "runtime.namespace_mismatch", "runtime namespace default is not the workload's namespace shop")
	missing := decide(with_value(claims, ["runtime", "namespace"], null))
	has_reason(missing, "runtime.namespace_mismatch", "runtime namespace (none) is not the workload's namespace shop")
}

test_runtime_service_account_mismatch if {
	decision := decide(with_value(claims, ["runtime", "service_account"], "default"))
	denied(decision, {"runtime.service_account_mismatch"})
	has_reason(
		decision, "runtime.service_account_mismatch",
		"runtime service account default is not the workload's service account api",
	)
	denied(decide(without(claims, ["runtime", "service_account"])), {"runtime.service_account_mismatch"})
}

test_runtime_image_drift if {
	decision := decide(with_value(claims, ["runtime", "image_digest"], other_digest))
	denied(decision, {"runtime.image_drift"})
	has_reason(
		decision, "runtime.image_drift",
		sprintf("runtime runs %s, not the attested image %s", [other_digest, digest]),
	)
}

test_runtime_no_drift_check_without_both_digests if {
	allowed(decide(with_value(claims, ["runtime", "image_digest"], null)))
	cfg := workload_with("require", ["provenance", "node", "runtime"])
	doc := json.patch(claims, [
		{"op": "remove", "path": ["image"]},
		{"op": "add", "path": ["runtime", "image_digest"], "value": other_digest},
	])
	allowed(decide_config(doc, cfg))
}

test_runtime_expires_at_now_is_expired if {
	decision := decide(with_value(claims, ["runtime", "expires_at"], "2026-11-22T10:00:00Z"))
	denied(decision, {"runtime.expired", "ttl.too_short"})
	has_reason(decision, "runtime.expired", "runtime evidence expired at 2026-11-22T10:00:00Z")
	denied(decide(with_value(claims, ["runtime", "expires_at"], "2026-11-22T09:00:00Z")), {"runtime.expired", "ttl.too_short"})
}
