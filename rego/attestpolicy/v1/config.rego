# METADATA
# title: Configuration
# description: |
#   data.attestpolicy.config, read by key. A decision validates only what it reads, so
#   its cost does not grow with the configuration: the limits, the type of each
#   section, the subject's workload entry, the audience entry, the node baseline of the
#   node's kind and the subject patterns of the issuers it matches. A problem there is
#   a deny with config.invalid reasons (and input.invalid ones, if any) and nothing
#   else. The whole document (every signer pattern, every entry) is validated where it
#   is loaded (attestpolicy.config) and where a configuration bundle is built.
#   A section that is absent or null is empty.
# custom:
#   codes:
#     - config.invalid
package attestpolicy.v1

import rego.v1

# The configuration, or {} when it is not an object (then config.invalid).
default _config := {}

_config := data.attestpolicy.config if is_object(data.attestpolicy.config)

_config_is_object if is_object(data.attestpolicy.config)

# The sections of the configuration, and the members of those that have fixed members.
_config_sections := {
	"trusted_signers": {"issuers", "key_ids"},
	"trusted_builders": set(),
	"workloads": set(),
	"node_baselines": set(),
	"audiences": set(),
	"limits": {"max_evidence_age_seconds", "clock_skew_seconds", "min_ttl_seconds", "default_ttl_seconds"},
	"revoked": {"signer_subjects", "node_ids", "image_digests", "spiffe_ids"},
}

# Each section or member, by reference: {} when absent, null or not an object. (Never
# pass a section to a function: OPA copies a function's arguments, so the cost would
# grow with the configuration. Read it by key, through these rules.)
default _signers_section := {}

_signers_section := data.attestpolicy.config.trusted_signers if is_object(data.attestpolicy.config.trusted_signers)

default _trusted_issuers := {}

_trusted_issuers := data.attestpolicy.config.trusted_signers.issuers if is_object(data.attestpolicy.config.trusted_signers.issuers)

default _trusted_key_ids := {}

_trusted_key_ids := data.attestpolicy.config.trusted_signers.key_ids if is_object(data.attestpolicy.config.trusted_signers.key_ids)

default _trusted_builders := {}

_trusted_builders := data.attestpolicy.config.trusted_builders if is_object(data.attestpolicy.config.trusted_builders)

default _workloads := {}

_workloads := data.attestpolicy.config.workloads if is_object(data.attestpolicy.config.workloads)

default _node_baselines := {}

_node_baselines := data.attestpolicy.config.node_baselines if is_object(data.attestpolicy.config.node_baselines)

default _audiences := {}

_audiences := data.attestpolicy.config.audiences if is_object(data.attestpolicy.config.audiences)

default _limits_section := {}

_limits_section := data.attestpolicy.config.limits if is_object(data.attestpolicy.config.limits)

default _revoked_section := {}

_revoked_section := data.attestpolicy.config.revoked if is_object(data.attestpolicy.config.revoked)

# The runtime revocations: data.attestpolicy.revocations, {member: {value: reason}} with the
# members of config.revoked. The PDP keeps them apart from the configuration (revoke(),
# the revocation store), so a reload of the configuration never lifts them.
default _runtime_revocations := {}

_runtime_revocations := data.attestpolicy.revocations if is_object(data.attestpolicy.revocations)

# _revocation(member, value) is the reason value is revoked for: its entry in
# config.revoked.<member>, else in the runtime revocations. Any entry revokes, whatever
# its reason (even false).
_revocation(member, value) := reason if {
	section := _revoked_section[member]
	is_object(section)
	reason := section[value]
} else := reason if {
	section := _runtime_revocations[member]
	is_object(section)
	reason := section[value]
}

# _revoked(member, value) holds when value is revoked (_revocation).
_revoked(member, value) if {
	_ = _revocation(member, value)
}

# The limits (ages, skews and min_ttl_ns in nanoseconds), defined when all are valid.
# Each is an integral number; floor() makes it an integer (OPA keeps 900.0 a float,
# which would show in the decision).
_limits := {
	"max_age_ns": floor(max_age) * 1000000000,
	"clock_skew_ns": floor(skew) * 1000000000,
	"min_ttl_seconds": floor(min_ttl),
	"min_ttl_ns": floor(min_ttl) * 1000000000,
	"default_ttl_seconds": floor(default_ttl),
} if {
	limits := _limits_section
	max_age := limits.max_evidence_age_seconds
	_seconds(max_age)
	skew := limits.clock_skew_seconds
	_seconds(skew)
	min_ttl := limits.min_ttl_seconds
	_positive_seconds(min_ttl)
	default_ttl := limits.default_ttl_seconds
	_positive_seconds(default_ttl)
}

# The subject's workload entry and the audience's entry (null when there is none).
default _workload := null

_workload := _workloads[_spiffe_id]

default _audience_entry := null

_audience_entry := _audiences[_audience]

# The fields of a workload entry and of an audience entry.
_workload_fields := {
	"namespace": "text", "service_account": "text", "source_repo": "text?",
	"image_digests": "digests?", "require": "classes?", "max_ttl_seconds": "ttl?",
	"node_kinds": "node_kinds?",
}

_audience_fields := {"max_ttl_seconds": "ttl"}

# The node baseline of the node's kind ({} when none is configured).
_node_baseline := baseline if {
	baseline := _node_baselines[_field(_node, "kind")]
	is_object(baseline)
} else := {}

# --- config.invalid ------------------------------------------------------------------

_config_problems contains "data.attestpolicy.config: must be an object" if not _config_is_object

_config_problems contains sprintf("config.%s: unknown section", [name]) if {
	some name, _ in _config
	not _config_sections[name]
}

_config_problems contains sprintf("config.%s: must be an object", [name]) if {
	some name, _ in _config_sections
	value := object.get(_config, name, null)
	value != null
	not is_object(value)
}

_config_problems contains sprintf("config.%s.%s: unknown member", [section, name]) if {
	some section, members in {
		"trusted_signers": _signers_section,
		"limits": _limits_section,
		"revoked": _revoked_section,
	}
	some name, _ in members
	not name in _config_sections[section]
}

_config_problems contains sprintf("config.%s.%s: must be an object", [section, name]) if {
	some section, members in {"trusted_signers": _signers_section, "revoked": _revoked_section}
	some name in _config_sections[section]
	value := object.get(members, name, null)
	value != null
	not is_object(value)
}

_config_problems contains "config.limits: is required" if object.get(_config, "limits", null) == null

_config_problems contains sprintf("config.limits.%s: must be an integer %s and <= 2147483647", [name, bound]) if {
	not _limits
	some [name, bound] in [
		["max_evidence_age_seconds", ">= 0"], ["clock_skew_seconds", ">= 0"],
		["min_ttl_seconds", "> 0"], ["default_ttl_seconds", "> 0"],
	]
	not _valid_limit(object.get(_limits_section, name, null), bound)
}

_valid_limit(x, ">= 0") if _seconds(x)

_valid_limit(x, "> 0") if _positive_seconds(x)

_config_problems contains sprintf("config.workloads[%s]: must be an object", [_spiffe_id]) if {
	_workload != null
	not is_object(_workload)
}

_config_problems contains sprintf("config.workloads[%s].%s: unknown field", [_spiffe_id, name]) if {
	is_object(_workload)
	some name, _ in _workload
	not _workload_fields[name]
}

_config_problems contains problem if {
	is_object(_workload)
	some name, kind in _workload_fields
	prefix := sprintf("config.workloads[%s]", [_spiffe_id])
	problem := _problem(prefix, name, kind, object.get(_workload, name, null))
	problem != null
}

_config_problems contains sprintf("config.workloads[%s].image_digests[%d]: must be %s", [_spiffe_id, i, _kind_text.digest]) if {
	digests := _field(_workload, "image_digests")
	is_array(digests)
	not _digest_list(digests)
	some i, digest in digests
	not _digest(digest)
}

# A node kind a workload accepts must have a baseline (an empty one states that the kind
# has no measurements to check): a missing one would pass any node of that kind silently.
_config_problems contains sprintf("config.workloads[%s].node_kinds: %s has no entry in config.node_baselines", [_spiffe_id, kind]) if {
	kinds := _field(_workload, "node_kinds")
	_valid_value("node_kinds", kinds)
	some kind in kinds
	not _has_baseline(kind)
}

# (A helper: "not is_object(_node_baselines[kind])" would be false in OPA when the entry
# is absent, as OPA evaluates a call's arguments outside the "not".)
_has_baseline(kind) if is_object(_node_baselines[kind])

_config_problems contains sprintf("config.audiences[%s]: must be an object", [_audience]) if {
	_audience_entry != null
	not is_object(_audience_entry)
}

_config_problems contains sprintf("config.audiences[%s].%s: unknown field", [_audience, name]) if {
	is_object(_audience_entry)
	some name, _ in _audience_entry
	not _audience_fields[name]
}

_config_problems contains problem if {
	is_object(_audience_entry)
	some name, kind in _audience_fields
	prefix := sprintf("config.audiences[%s]", [_audience])
	problem := _problem(prefix, name, kind, object.get(_audience_entry, name, null))
	problem != null
}

_config_problems contains sprintf("config.node_baselines[%s]: must be an object", [_field(_node, "kind")]) if {
	baseline := _node_baselines[_field(_node, "kind")]
	not is_object(baseline)
}

_config_problems contains sprintf("config.node_baselines[%s].%s: must be 2 to 4096 lowercase hex digits, in pairs", [_field(_node, "kind"), name]) if {
	some name, value in _node_baseline
	not _hex(value)
}

_config_problems contains sprintf("config.trusted_signers.issuers[%s]: must be an array of subject patterns", [issuer]) if {
	some issuer in _signature_issuers
	patterns := _trusted_issuers[issuer]
	not is_array(patterns)
}

_config_problems contains sprintf("config.trusted_signers.issuers[%s][%d]: must be a subject pattern (a string of 1 to 4096 characters, no glob syntax but *)", [issuer, i]) if {
	some issuer in _signature_issuers
	not _issuer_patterns_valid(issuer)
	patterns := _trusted_issuers[issuer]
	is_array(patterns)
	some i, pattern in patterns
	not _subject_pattern(pattern)
}

# _issuer_patterns_valid(issuer) holds when every subject pattern of a trusted issuer is
# valid: one regex over all of them (a regex is compiled on every call); each is checked
# alone (_subject_pattern) only when that fails. (It takes the issuer, not its patterns:
# OPA copies a function's arguments.)
_issuer_patterns_valid(issuer) if {
	patterns := _trusted_issuers[issuer]
	is_array(patterns)
	every pattern in patterns {
		is_string(pattern)
		_text_length(pattern)
	}
	not regex.match(`[?\[\]{}\\]`, concat("\n", patterns))
}

# _subject_pattern(x) holds for a valid signer subject pattern: only "*" is special
# (it matches any characters, "/" and "." included). Other glob syntax is refused:
# regorus raises on a malformed glob where OPA returns undefined.
_subject_pattern(x) if {
	_valid("text", x)
	not regex.match(`[?\[\]{}\\]`, x)
}
