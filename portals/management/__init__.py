"""Management commands of portals."""
