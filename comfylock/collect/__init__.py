"""Stage 2: every requirement of core, each node and the user, with where it came from."""
