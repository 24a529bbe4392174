"""Stage 3: pip-policy.json policies (ComfyUI-Manager's schema) applied to the collected requirements."""
