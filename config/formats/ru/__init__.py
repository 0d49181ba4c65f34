"""Russian date formats."""
