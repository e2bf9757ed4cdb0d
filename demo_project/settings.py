"""Settings of the demo site. REDIS_URL comes from the environment or the embedded server.

Safe as they are if the demo ends up deployed: DEBUG is off unless DJANGO_DEBUG=1 asks
for it (``bin/demo`` does, for its site on 127.0.0.1), and the secret key is
DJANGO_SECRET_KEY or one generated per machine, never a string in this file.
"""

import os
import secrets
from pathlib import Path

import django

from demo_project.private_files import read_or_create_secret

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DEMO_DATA_DIR", BASE_DIR / ".demo-data"))
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
if "DEMO_DATA_DIR" not in os.environ:
    # The demo's own folder (database with sessions, key, password): owner-only, even if
    # an older demo made it with the umask's mode. A folder you chose is left as it is.
    DATA_DIR.chmod(0o700)

DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
# Generated the first time and kept next to the database (owner-only, git-ignored), so
# sessions survive restarts; DJANGO_SECRET_KEY wins when set.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or read_or_create_secret(
    DATA_DIR / "secret-key.txt", lambda: secrets.token_urlsafe(50)
)
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
# With DEBUG on: no debug page for a Host not in ALLOWED_HOSTS, and URLs on debug pages
# shown without their passwords (demo_project/debug.py).
DEFAULT_EXCEPTION_REPORTER = "demo_project.debug.QuietHostReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "demo_project.debug.RedactingFilter"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "atomicops",
    "demo_project.demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "demo_project.demo.middleware.RedisDownMiddleware",
]
ROOT_URLCONF = "demo_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "demo_project.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "demo.sqlite3",
        # The rush button sends a dozen bookings at once: wait for SQLite's write lock
        # instead of failing, and (Django >= 5.1) take it at BEGIN so two transactions
        # never deadlock upgrading from read to write.
        "OPTIONS": {
            "timeout": 20,
            **({"transaction_mode": "IMMEDIATE"} if django.VERSION >= (5, 1) else {}),
        },
    }
}
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
ATOMICOPS = {"URL": REDIS_URL, "KEY_PREFIX": "demo"}
if os.environ.get("DEMO_REST") == "1":
    # Over Upstash's REST API, with UPSTASH_REDIS_REST_URL / _TOKEN (manage.py starts a
    # local REST server in front of REDIS_URL's server when they are not set).
    ATOMICOPS = {"REST": True, "KEY_PREFIX": "demo"}

# Seconds the demo's simulated payment provider takes inside a booking (the slow part
# the booking lock protects).
DEMO_PAYMENT_DELAY = float(os.environ.get("DEMO_PAYMENT_DELAY", "0.3"))
# Where ``manage.py demo_user`` keeps the generated password of the demo superuser.
DEMO_PASSWORD_FILE = DATA_DIR / "demo-password.txt"
