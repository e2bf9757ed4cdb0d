from django.db import migrations, models


class Migration(migrations.Migration):
    """The unmanaged Dashboard model: no table, only its content type and permissions."""

    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Dashboard",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
            ],
            options={
                "verbose_name": "scripts dashboard",
                "verbose_name_plural": "scripts dashboard",
                "permissions": [
                    ("view_dashboard", "Can view the atomicops dashboard"),
                    ("load_scripts", "Can load all scripts onto the Redis server"),
                    ("flush_scripts", "Can flush the script cache and run the flush check"),
                ],
                "managed": False,
                "default_permissions": (),
            },
        ),
    ]
