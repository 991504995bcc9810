"""Evidence verifiers: one module per format, each turning raw evidence into claims."""
