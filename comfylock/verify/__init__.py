"""Stage 8: do the custom nodes still load? ComfyUI's own loader, run and read; sync's safety net."""
