"""Evaluators: the in-process Rego engine, remote OPA, and the decision cache."""
