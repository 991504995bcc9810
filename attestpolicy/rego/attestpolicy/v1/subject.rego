# METADATA
# title: Subject and request
# description: |
#   The subject must be a registered, unrevoked workload, the audience must be known,
#   and every evidence class the workload requires must be present. The workload and
#   audience entries in use must be well formed.
# custom:
#   codes:
#     - subject.unregistered
#     - subject.revoked
#     - request.unknown_audience
#     - evidence.missing
#     - config.invalid
package attestpolicy.v1

import rego.v1

_evidence_classes := {"image", "provenance", "node", "runtime"}

_registered if _workload != null

_known_audience if _audience_entry != null

# METADATA
# title: Subject unregistered
# description: subject.spiffe_id has no entry in config.workloads.
# custom:
#   code: subject.unregistered
violation contains {"code": "subject.unregistered", "message": sprintf("workload %s is not registered", [_spiffe_id])} if {
	_spiffe_id
	not _registered
}

# METADATA
# title: Subject revoked
# description: subject.spiffe_id is in config.revoked.spiffe_ids.
# custom:
#   code: subject.revoked
violation contains {"code": "subject.revoked", "message": sprintf("workload %s is revoked", [_spiffe_id])} if {
	_spiffe_id in _config.revoked.spiffe_ids
}

# METADATA
# title: Unknown audience
# description: request.audience has no entry in config.audiences.
# custom:
#   code: request.unknown_audience
violation contains {"code": "request.unknown_audience", "message": sprintf("audience %s is not configured", [_audience])} if {
	_audience
	not _known_audience
}

# METADATA
# title: Required evidence missing
# description: An evidence class in the workload's require list is absent (one per class).
# custom:
#   code: evidence.missing
violation contains {"code": "evidence.missing", "message": sprintf("required %s evidence is absent", [class])} if {
	class := _workload.require[_]
	class in _evidence_classes
	not input[class] != null # absent or null
}

# METADATA
# title: Workload or audience entry invalid
# description: The configuration entry for this subject or for this audience is malformed.
# custom:
#   code: config.invalid
violation contains {"code": "config.invalid", "message": sprintf("config.workloads[%s]: %s", [_spiffe_id, problem])} if {
	_registered
	not _workload_valid
	some problem in _workload_problems
}

violation contains {"code": "config.invalid", "message": sprintf("config.audiences[%s].max_ttl_seconds must be a number > 0 and <= 2147483647", [_audience])} if {
	_known_audience
	not _ttl_seconds_value(_audience_entry.max_ttl_seconds)
}

# The workload entry is well formed (one rule body checks it all; an optional field
# that is null fails it, and then _workload_problems, which is exact, is evaluated).
_workload_valid if {
	workload := _workload
	is_object(workload)
	is_string(workload.namespace)
	is_string(workload.service_account)
	require := workload.require
	is_array(require)
	every class in require {
		class in {"image", "provenance", "node", "runtime"} # _evidence_classes
	}
	is_string(object.get(workload, "source_repo", ""))
	is_array(object.get(workload, "image_digests", []))
	ttl := object.get(workload, "max_ttl_seconds", 1)
	is_number(ttl) # _ttl_seconds_value, written out
	ttl > 0
	ttl <= 2147483647
}

_valid_require if {
	is_array(_workload.require)
	every class in _workload.require {
		class in _evidence_classes
	}
}

_invalid_workload_ttl if {
	ttl := _workload.max_ttl_seconds
	ttl != null
	not _ttl_seconds_value(ttl)
}

# The slow path, only for an invalid entry: what is wrong with it.
_workload_problems contains "must be an object" if not is_object(_workload)

_workload_problems contains sprintf("%s must be a string", [name]) if {
	is_object(_workload)
	some name in ["namespace", "service_account"]
	not is_string(_workload[name])
}

_workload_problems contains "require must be an array of evidence classes (image, provenance, node, runtime)" if {
	is_object(_workload)
	not _valid_require
}

_workload_problems contains sprintf("%s must be %s", [name, expected]) if {
	is_object(_workload)
	some [name, types, expected] in [
		["source_repo", {"null", "string"}, "a string"],
		["image_digests", {"null", "array"}, "an array"],
	]
	not type_name(object.get(_workload, name, null)) in types
}

_workload_problems contains "max_ttl_seconds must be a number > 0 and <= 2147483647" if {
	_invalid_workload_ttl
}
