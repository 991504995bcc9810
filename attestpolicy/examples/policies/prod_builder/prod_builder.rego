# METADATA
# title: Production builder (Acme)
# description: |
#   An organisation's own rule beside the default policy (docs/custom-policies.md): a
#   workload registered in a production namespace needs verified provenance from one of
#   the production builders. The rule adds to the default policy's violation set, in its
#   package, so the shipped decision rule denies with its reason and everything else
#   (the other checks, input and configuration validation, the TTL of an allow, its
#   ttl_terms and revocable) is unchanged. Like the default policy's checks, it runs
#   only on valid input and configuration, and reads values through _field (absent and
#   null alike, never a type error), so both engines decide the same.
# custom:
#   codes:
#     - acme.prod_builder
package attestpolicy.v1

import rego.v1

# The namespaces the rule covers, and the builders their images' provenance must name.
# Names added to the default policy's package start with _acme_, so that they never
# collide with the shipped ones.
_acme_prod_namespaces := {"prod"}

_acme_prod_builders := {"https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.1.0"}

# What is wrong with the provenance for a production workload (undefined when nothing is).
_acme_provenance_problem := "there is no provenance" if {
	_provenance == null
} else := "the provenance is not verified" if {
	_field(_provenance, "verified") != true
} else := sprintf("builder %s is not a production builder", [_show(builder)]) if {
	builder := _field(_provenance, "builder_id")
	not builder in _acme_prod_builders
}

# METADATA
# title: Production workload without production provenance
# description: |
#   The subject's workload is registered in a production namespace and the image's
#   provenance is absent, unverified, or from a builder that is not a production one.
# custom:
#   code: acme.prod_builder
violation contains {"code": "acme.prod_builder", "message": sprintf("workload in namespace %s needs verified provenance from a production builder: %s", [namespace, problem])} if {
	namespace := _field(_workload, "namespace")
	namespace in _acme_prod_namespaces
	problem := _acme_provenance_problem
}
