"""``python -m points_service migrate|serve``."""

import sys

from loyalty_shared.entrypoint import main
from points_service.migrate import MIGRATIONS

if __name__ == "__main__":
    sys.exit(main("points_service", MIGRATIONS, default_port=8001))
