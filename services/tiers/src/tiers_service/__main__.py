"""``python -m tiers_service migrate|serve``."""

import sys

from loyalty_shared.entrypoint import main
from tiers_service.migrate import MIGRATIONS

if __name__ == "__main__":
    sys.exit(main("tiers_service", MIGRATIONS, default_port=8002))
