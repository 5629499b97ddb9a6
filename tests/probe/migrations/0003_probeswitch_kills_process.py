from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("probe", "0002_switch_and_aggregate"),
    ]

    operations = [
        migrations.AddField(
            model_name="probeswitch",
            name="kills_process",
            field=models.BooleanField(default=False),
        ),
    ]
