"""tff_rdq."""
