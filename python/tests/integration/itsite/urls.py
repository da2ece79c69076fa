from django.urls import path

from . import views

urlpatterns = [
    path("enqueue/<str:name>/", views.enqueue),
    path("enqueue-then-fail/", views.enqueue_then_fail),
]
