"""``python -m rewards_service migrate|serve``."""

import sys

from loyalty_shared.entrypoint import main
from rewards_service.migrate import MIGRATIONS

if __name__ == "__main__":
    sys.exit(main("rewards_service", MIGRATIONS, default_port=8003))
