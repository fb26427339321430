from django.contrib import admin
from django.urls import include, path

from testproject import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("parity/", include("testproject.parity_views")),
    path("django/pid", views.pid),
    path("django/slow", views.slow),
    path("django/async", views.async_view),
    path("django/echo", views.echo),
    path("django/meta", views.meta),
    path("django/protected", views.protected),
    path("django/stream", views.stream),
    path("django/forever", views.forever),
    path("django/thread", views.thread),
    path("django/async-thread", views.async_thread),
    path("django/sync-stream", views.sync_stream),
    path("django/ünïcode", views.async_view),
    path("django/group-send/<str:group>", views.group_send),
    path("django/secure", views.secure),
    path("django/session", views.session),
]
