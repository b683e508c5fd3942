"""Package data: the shipped default trace subset, a ShareGPT length table, licences (README.md)."""
