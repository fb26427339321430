from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path

from quickstart import views

urlpatterns = [
    path("", views.index, name="index"),
    path("admin/", admin.site.urls),
    *staticfiles_urlpatterns(),  # only while DEBUG; nginx serves static files in production
]
