"""Stage 7: why a lock is what it is: conflict attribution, duplicate imports, why/diff/nodes."""
