"""The Stack Overflow next-word-prediction experiment built on `tff_rdq`."""
