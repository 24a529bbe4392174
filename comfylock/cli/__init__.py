"""The command line: parse arguments, call comfylock.api, render what it returns."""
