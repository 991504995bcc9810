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

# METADATA
# title: Runtime unverified
# description: runtime.verified is not true.
# custom:
#   code: runtime.unverified
violation contains {"code": "runtime.unverified", "message": "runtime evidence is not verified"} if {
	_field(_runtime, "verified") == false
}

# METADATA
# title: Runtime namespace or service account mismatch
# description: runtime.namespace or runtime.service_account differs from the workload's.
# custom:
#   codes:
#     - runtime.namespace_mismatch
#     - runtime.service_account_mismatch
violation contains {"code": code, "message": sprintf("runtime %s %s is not the workload's %s %s", [label, _show(running), label, expected])} if {
	_runtime != null
	some [field, code, label] in [
		["namespace", "runtime.namespace_mismatch", "namespace"],
		["service_account", "runtime.service_account_mismatch", "service account"],
	]
	expected := _field(_workload, field)
	is_string(expected)
	running := _field(_runtime, field)
	running != expected
}

# METADATA
# title: Runtime image drift
# description: runtime.image_digest and image.digest are both present and differ.
# custom:
#   code: runtime.image_drift
violation contains {"code": "runtime.image_drift", "message": sprintf("runtime runs %s, not the attested image %s", [running, _image_digest])} if {
	running := _field(_runtime, "image_digest")
	is_string(running)
	is_string(_image_digest)
	running != _image_digest
}

# METADATA
# title: Runtime evidence expired
# description: runtime.expires_at <= now.
# custom:
#   code: runtime.expired
violation contains {"code": "runtime.expired", "message": sprintf("runtime evidence expired at %s", [_runtime.expires_at])} if {
	_runtime_expires_ns <= _now_ns
}
