"""``python -m jobd.warm``: the server jobd starts for a runtime."""

from .server import main

raise SystemExit(main())
