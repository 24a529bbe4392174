"""Stage 4: one resolution with uv (the only place that runs uv), and the no-op shortcut before it."""
