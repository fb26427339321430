from benchapp import views
from django.urls import path

urlpatterns = [
    path("sync/hello", views.hello),
    path("sync/row", views.row),
    path("sync/list", views.rows),
    path("sync/query", views.query),
    path("sync/io", views.io),
    path("sync/cmd", views.cmd),
    path("async/hello", views.ahello),
    path("async/row", views.arow),
    path("async/list", views.arows),
    path("async/query", views.aquery),
    path("async/io", views.aio),
    path("async/cmd", views.acmd),
]
