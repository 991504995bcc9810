# METADATA
# title: Runtime
# description: |
#   Checks on runtime evidence, whenever it is present: verified, running in the
#   workload's namespace and service account, running the attested image, not expired.
# custom:
#   codes:
#     - runtime.unverified
#     - runtime.namespace_mismatch
#     - runtime.service_account_mismatch
#     - runtime.image_drift
#     - runtime.expired
package attestpolicy.v1

import rego.v1

_runtime_expires_ns := ns if {
	ns := _timestamps.runtime_expires_at
} else := time.parse_rfc3339_ns(input.runtime.expires_at) if {
	is_string(input.runtime.expires_at)
	regex.match(_rfc3339, input.runtime.expires_at)
}

# METADATA
# title: Runtime unverified
# description: runtime.verified is not true.
# custom:
#   code: runtime.unverified
violation contains {"code": "runtime.unverified", "message": "runtime evidence is not verified"} if {
	input.runtime != null
	not input.runtime.verified == true
}

# METADATA
# title: Runtime namespace or service account mismatch
# description: runtime.namespace or runtime.service_account differs from the workload's.
# custom:
#   codes:
#     - runtime.namespace_mismatch
#     - runtime.service_account_mismatch
violation contains {"code": code, "message": sprintf("runtime %s %s is not the workload's %s %s", [label, _show_field(input.runtime, field), label, expected])} if {
	input.runtime != null
	some [field, code, label] in [
		["namespace", "runtime.namespace_mismatch", "namespace"],
		["service_account", "runtime.service_account_mismatch", "service account"],
	]
	expected := _workload[field]
	is_string(expected)
	not input.runtime[field] == expected
}

# METADATA
# title: Runtime image drift
# description: runtime.image_digest and image.digest are both present and differ.
# custom:
#   code: runtime.image_drift
violation contains {"code": "runtime.image_drift", "message": sprintf("runtime runs %s, not the attested image %s", [running, attested])} if {
	running := input.runtime.image_digest
	is_string(running)
	attested := input.image.digest
	is_string(attested)
	running != attested
}

# METADATA
# title: Runtime evidence expired
# description: runtime.expires_at <= now.
# custom:
#   code: runtime.expired
violation contains {"code": "runtime.expired", "message": sprintf("runtime evidence expired at %s", [input.runtime.expires_at])} if {
	_runtime_expires_ns <= _now_ns
}
