"""The batch-scoring step: a table or a transaction log scored with a package, to Parquet."""
