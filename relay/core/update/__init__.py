"""Signed A/B updates with RAUC: the rauc command line and the one update worker."""
