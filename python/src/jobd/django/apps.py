from django.apps import AppConfig


class JobdConfig(AppConfig):
    name = "jobd.django"
    # The default label would be "django".
    label = "jobd"
    verbose_name = "jobd"
    # Fixed, so that a project's DEFAULT_AUTO_FIELD never asks for a migration here.
    default_auto_field = "django.db.models.AutoField"
