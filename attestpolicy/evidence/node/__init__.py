"""Evidence about the machine a workload runs on.

``tpm`` (TPM 2.0 quotes), ``sev_snp`` (AMD SEV-SNP reports, Azure SNP vTPM), ``tdx``
(Intel TDX quotes), ``aws_iid`` (EC2 instance identity documents) and ``gce_iit`` (GCE
instance identity tokens); ``registry`` maps each node evidence kind to its verifier.
"""
