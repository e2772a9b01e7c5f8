from cti.cli import main

raise SystemExit(main())
