"""Evidence about the running workload: who it is and where it runs.

``spiffe`` (X.509- and JWT-SVIDs: the subject's identity), ``psat`` (Kubernetes projected
service account tokens) and ``workload_attestor`` (runtime facts bound to a PSAT).
"""
