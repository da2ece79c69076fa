"""A read-only "jobd" page in the admin index, for staff: what jobd_status prints."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone

from ..overview import overview
from . import places, present
from .models import Status


@admin.register(Status)
class StatusAdmin(admin.ModelAdmin):
    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        # The one page, under the changelist's name so that the index links to it.
        view = self.admin_site.admin_view(self.status_view)
        return [path("", view, name="jobd_status_changelist")]

    def status_view(self, request: HttpRequest) -> HttpResponse:
        # admin_view() lets in active staff only, as has_view_permission says.
        seen = overview(places.socket_path(), places.spool_dir())
        now = timezone.now()
        context = {
            **self.admin_site.each_context(request),
            "title": "jobd",
            "opts": self.model._meta,
            "seen": seen,
            "daemon": present.daemon_line(seen),
            "jobs": present.job_lines(seen, now),
            "counts": present.counts_line(seen),
            "folders": present.folder_views(seen, now),
        }
        return TemplateResponse(request, "admin/jobd/status.html", context)
