from dunet.cli import main

raise SystemExit(main())
