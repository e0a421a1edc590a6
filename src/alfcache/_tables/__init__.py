"""The tables: schema, the one builder, parquet storage and its lock, and the
ONE-compatible frames and functions."""
