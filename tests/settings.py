"""Settings for the test suite. The Redis URL is set per test by fixtures."""

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "atomicops",
    "tests.testapp",
    "demo_project.demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# Tests point this at the server they started (see conftest); never at a shared one.
# No timeline flusher thread (STATS_FLUSH_INTERVAL 0 when Django starts): it would add
# keys to whichever server a later test points at. tests/test_timeline.py starts its own.
ATOMICOPS = {"URL": "redis://127.0.0.1:1/0", "LOAD_ON_STARTUP": False, "STATS_FLUSH_INTERVAL": 0}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
