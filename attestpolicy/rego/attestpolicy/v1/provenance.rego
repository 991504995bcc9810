# METADATA
# title: Provenance
# description: |
#   Checks on build provenance, whenever it is present: verified, built by a trusted
#   builder, from the workload's source repository, and about this image's digest.
# custom:
#   codes:
#     - provenance.unverified
#     - provenance.untrusted_builder
#     - provenance.source_mismatch
#     - provenance.subject_mismatch
package attestpolicy.v1

import rego.v1

_trusted_builder if {
	builder := input.provenance.builder_id
	is_string(builder)
	builder == _config.trusted_builders[_]
}

_provenance_names_image if {
	digest := input.image.digest
	is_string(digest)
	digest == input.provenance.subject_digests[_]
}

# METADATA
# title: Provenance unverified
# description: provenance.verified is not true.
# custom:
#   code: provenance.unverified
violation contains {"code": "provenance.unverified", "message": "provenance is not verified"} if {
	input.provenance != null
	not input.provenance.verified == true
}

# METADATA
# title: Provenance builder untrusted
# description: provenance.builder_id is not in config.trusted_builders.
# custom:
#   code: provenance.untrusted_builder
violation contains {"code": "provenance.untrusted_builder", "message": sprintf("builder %s is not trusted", [_show_field(input.provenance, "builder_id")])} if {
	input.provenance != null
	not _trusted_builder
}

# METADATA
# title: Provenance source mismatch
# description: The workload names a source_repo and the provenance's source_repo differs.
# custom:
#   code: provenance.source_mismatch
violation contains {"code": "provenance.source_mismatch", "message": sprintf("source %s is not the workload's source %s", [_show_field(input.provenance, "source_repo"), expected])} if {
	input.provenance != null
	expected := _workload.source_repo
	is_string(expected)
	not input.provenance.source_repo == expected
}

# METADATA
# title: Provenance subject mismatch
# description: Image evidence is present and its digest is not among provenance.subject_digests.
# custom:
#   code: provenance.subject_mismatch
violation contains {"code": "provenance.subject_mismatch", "message": sprintf("provenance does not name image %s", [_show_field(input.image, "digest")])} if {
	input.provenance != null
	input.image != null
	not _provenance_names_image
}
