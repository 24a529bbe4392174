from comfylock.cli.main import run

run()
