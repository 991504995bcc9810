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

_builder_id := _field(_provenance, "builder_id")

_source_repo := _field(_provenance, "source_repo")

# The builder is a key of config.trusted_builders.
_trusted_builder if {
	is_string(_builder_id)
	_ = _trusted_builders[_builder_id]
}

# METADATA
# title: Provenance unverified
# description: provenance.verified is not true.
# custom:
#   code: provenance.unverified
violation contains {"code": "provenance.unverified", "message": "provenance is not verified"} if {
	_field(_provenance, "verified") == false
}

# METADATA
# title: Provenance builder untrusted
# description: provenance.builder_id is not a key of config.trusted_builders.
# custom:
#   code: provenance.untrusted_builder
violation contains {"code": "provenance.untrusted_builder", "message": sprintf("builder %s is not trusted", [_show(_builder_id)])} if {
	_provenance != null
	not _trusted_builder
}

# METADATA
# title: Provenance source mismatch
# description: The workload names a source_repo and the provenance's source_repo differs.
# custom:
#   code: provenance.source_mismatch
violation contains {"code": "provenance.source_mismatch", "message": sprintf("source %s is not the workload's source %s", [_show(_source_repo), expected])} if {
	_provenance != null
	expected := _field(_workload, "source_repo")
	is_string(expected)
	_source_repo != expected
}

# METADATA
# title: Provenance subject mismatch
# description: Image evidence is present and its digest is not among provenance.subject_digests.
# custom:
#   code: provenance.subject_mismatch
violation contains {"code": "provenance.subject_mismatch", "message": sprintf("provenance does not name image %s", [_show(_image_digest)])} if {
	_provenance != null
	_image != null
	not _image_digest in _subject_digests
}
