from django.db import models


class Status(models.Model):
    """No table, no rows: the entry that puts jobd's status page in the admin index
    (admin.py), which lists models only."""

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = "status"
        verbose_name_plural = "status"
