from chat import views
from chat.models import ROOM_NAME
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path, re_path

urlpatterns = [
    path("", views.lobby, name="lobby"),
    re_path(rf"^room/(?P<name>{ROOM_NAME})/$", views.room, name="room"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    *staticfiles_urlpatterns(),  # DEBUG only; behind nginx use --static /static/=DIR
]
