"""The bench's settings: phases and modes, timeouts, the targets printed next to the figures."""

from __future__ import annotations

from pathlib import Path

HOST = "127.0.0.1"
API_KEY = "benchcrm"
PARTITIONS = 6
TOPICS = ("orders", "loyalty.points", "loyalty.tiers")
POINTS_PHASES = ("reference", "reflatency", "backlog", "live", "latency", "reads")
TIERS_PHASES = ("tiers-backlog", "both-backlog", "both-latency")
REWARDS_PHASES = ("rewards-backlog", "rewards-latency")
PHASES = POINTS_PHASES + TIERS_PHASES + REWARDS_PHASES
# points+tiers also runs the points backlog phase: the figure to compare "points next to tiers" with
MODES = {
    "points": POINTS_PHASES,
    "points+tiers": ("backlog", *TIERS_PHASES),
    "rewards": REWARDS_PHASES,
    "all": PHASES,
}
POINTS, TIERS, REWARDS = "points_service", "tiers_service", "rewards_service"
# the rewards service publishes here (reward.issued, program.member_enrolled, ...); points consumes it
REWARDS_TOPIC = "loyalty.rewards"
READ_CLIENTS = ("raw", "httpx")
WARM_UP_EVENTS = 20
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
COUNT_POLL_S = 0.05
WATCH_POLL_S = 0.02
# The tier.changed watcher's fetch wait: on tansu a fetch is held this long even with data waiting.
TIER_WATCH_FETCH_WAIT_MS = 10
# The rewards phases: the catalog's stock (never the limit) and the paced runs' order dates.
REWARDS_STOCK = 10_000_000
SEGMENT_DAYS = 25  # a paced run's orders (and the history's) are dated within one calendar month
# Targets printed next to the figures.
TARGET_REF_RATIO = 0.30  # points (and tiers) alone draining a backlog, against the reference loop
TARGET_P99_MS = 150.0  # order published -> effect visible, at TARGET_P99_RATE
TARGET_P99_RATE = 1000.0
TARGET_READS_RATIO = 0.5  # balance reads, one worker, against a bare FastAPI route (bench/bare_app.py)
TARGET_READ_P99_MS = 20.0  # balance reads paced at TARGET_READ_RATE
TARGET_READ_RATE = 1000.0
TARGET_RSS_MB = 150.0  # peak resident memory of one service process, under load
ROOT = Path(__file__).resolve().parent.parent  # the repository
BENCH_DIR = Path(__file__).resolve().parent  # bench/ (bare_app.py, results/)
# the tables whose rows count an order processed, in the points and in the tiers database
POINTS_TABLE = "ledger_entries"
# points next to tiers: one row per earned order (the ledger also holds the re-ratings of tier changes)
POINTS_ORDERS = "orders"
TIERS_TABLE = "qualifying_orders"
# rewards: one row per order.paid it counted (its member facts)
REWARDS_ORDERS = "orders"

Message = tuple[bytes, str, bytes]  # (Kafka key, event id, CloudEvent bytes)
