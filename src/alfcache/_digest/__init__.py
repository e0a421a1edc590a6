"""Reading files: digests (MD5, XXH3), how the reading is scheduled, checkpoints."""
