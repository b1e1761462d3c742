"""Self-hosted GPU cost: which pool a cloud cost line belongs to (`pools`), its allocation to
the LLM calls of the pool's models hour by hour (`allocate`), and the figures reports and the
dashboard show (`report`)."""
