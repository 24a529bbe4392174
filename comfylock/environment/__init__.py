"""Stage 6: the target Python environment: what it holds, syncing it to a lock, its history."""
