"""Customer rows from a transaction log."""
