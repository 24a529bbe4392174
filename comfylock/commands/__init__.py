"""What comfylock.api's commands do, one module per command family, over the stages above."""
