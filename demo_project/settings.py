"""Settings of the demo site. REDIS_URL comes from the environment or the embedded server."""

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DEMO_DATA_DIR", BASE_DIR / ".demo-data"))
DATA_DIR.mkdir(exist_ok=True)

# Demo only: a fixed key is fine for a site that runs on localhost.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

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

# Seconds the demo's simulated payment provider takes inside a booking (the slow part
# the booking lock protects).
DEMO_PAYMENT_DELAY = float(os.environ.get("DEMO_PAYMENT_DELAY", "0.3"))
# Where ``manage.py demo_user`` keeps the generated password of the demo superuser.
DEMO_PASSWORD_FILE = DATA_DIR / "demo-password.txt"
