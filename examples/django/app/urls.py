from django.contrib import admin
from django.urls import path

from reports import views

urlpatterns = [
    path("admin/", admin.site.urls),  # with "jobd" in its index: jobd's status, for staff
    path("reports/", views.request_report, name="request_report"),
    path("reports/<str:result_id>/", views.report_status, name="report_status"),
]
