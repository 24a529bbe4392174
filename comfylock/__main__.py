from comfylock.cli.main import main

raise SystemExit(main())
