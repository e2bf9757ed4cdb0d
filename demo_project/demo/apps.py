from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo app: one page per atomicops pattern, plus the tour and race commands."""

    name = "demo_project.demo"
    label = "demo"
    verbose_name = "atomicops demo"
    default_auto_field = "django.db.models.BigAutoField"
