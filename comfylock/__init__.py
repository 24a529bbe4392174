"""comfylock: one committed lock file for a ComfyUI install, resolved at once with uv, synced exactly."""

__version__ = "0.1.0"
