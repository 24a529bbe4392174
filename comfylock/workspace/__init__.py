"""Stage 1: find ComfyUI, its enabled custom nodes, comfylock's settings and folders."""
