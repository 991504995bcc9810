# METADATA
# title: Configuration
# description: |
#   Typed access to data.attestpolicy.config. A missing map or list is empty. A
#   config.invalid violation is raised for what could otherwise widen access when
#   malformed: the limits, the revocation lists, the node baselines, and the workload
#   and audience entries in use. Other malformed parts (a trusted signer or builder
#   entry of the wrong type, say) can only fail to match, which denies.
# custom:
#   codes:
#     - config.invalid
package attestpolicy.v1

import rego.v1

_config := data.attestpolicy.config

# The limits, validated in one rule body (each rule costs an evaluation): undefined when
# any limit is missing or out of range. Ages, skews and min_ttl_ns are in nanoseconds.
# Every limit is at most 2147483647.
_limits := {
	"max_age_ns": round(max_age * 1000000000),
	"clock_skew_ns": round(skew * 1000000000),
	"min_ttl_seconds": min_ttl,
	"min_ttl_ns": round(min_ttl * 1000000000),
	"default_ttl_seconds": default_ttl,
} if {
	limits := _config.limits
	max_age := limits.max_evidence_age_seconds
	is_number(max_age)
	max_age >= 0
	max_age <= 2147483647
	skew := limits.clock_skew_seconds
	is_number(skew)
	skew >= 0
	skew <= 2147483647
	min_ttl := limits.min_ttl_seconds
	is_number(min_ttl)
	min_ttl > 0
	min_ttl <= 2147483647
	default_ttl := limits.default_ttl_seconds
	is_number(default_ttl)
	default_ttl > 0
	default_ttl <= 2147483647
}

# The workload entry of the subject, and the entry of the audience (either may be
# ill-typed: see the config.invalid rules below).
_workload := _config.workloads[_spiffe_id]

_audience_entry := _config.audiences[_audience]

# METADATA
# title: Configuration invalid
# description: The configuration is missing, or a part of it in use is malformed.
# custom:
#   code: config.invalid
violation contains {"code": "config.invalid", "message": "data.attestpolicy.config must be an object"} if {
	not is_object(_config)
}

violation contains {"code": "config.invalid", "message": sprintf("config.limits.%s must be a number %s and <= 2147483647", [name, bound])} if {
	not _limits
	some [name, bound] in [
		["max_evidence_age_seconds", ">= 0"], ["clock_skew_seconds", ">= 0"],
		["min_ttl_seconds", "> 0"], ["default_ttl_seconds", "> 0"],
	]
	not _valid_limit(_config.limits[name], bound)
}

violation contains {"code": "config.invalid", "message": sprintf("config.revoked.%s must be an array", [name])} if {
	some name in ["spiffe_ids", "signer_subjects", "node_ids", "image_digests"]
	value := _config.revoked[name]
	value != null
	not is_array(value)
}

violation contains {"code": "config.invalid", "message": sprintf("config.%s must be an object", [name])} if {
	some name in ["revoked", "node_baselines"]
	value := _config[name]
	value != null
	not is_object(value)
}

_valid_limit(x, ">= 0") if _age_seconds_value(x)

_valid_limit(x, "> 0") if _ttl_seconds_value(x)
