from django.contrib import admin
from django.urls import path

from testproject import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("django/pid", views.pid),
    path("django/slow", views.slow),
    path("django/async", views.async_view),
    path("django/echo", views.echo),
    path("django/protected", views.protected),
    path("django/stream", views.stream),
    path("django/forever", views.forever),
    path("django/ünïcode", views.async_view),
]
