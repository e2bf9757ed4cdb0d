"""Django settings of the Celery workers tests/test_celery.py starts: the suite's, with
atomicops pointed at the server the test module started (passed in the environment)."""

import os

from tests.settings import *  # noqa: F403

ATOMICOPS = {
    "URL": os.environ["ATOMICOPS_CELERY_TEST_URL"],
    "LOAD_ON_STARTUP": False,
    "STATS_FLUSH_INTERVAL": 0,
}
