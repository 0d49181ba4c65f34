"""Management commands of the token API."""
