from ocipy.cli.main import main

raise SystemExit(main())
