from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path
from jobs import views

urlpatterns = [
    path("", views.index, name="jobs"),
    path("upload/", views.upload, name="upload"),
    path("jobs/<int:pk>/", views.job, name="job"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    *staticfiles_urlpatterns(),  # DEBUG only; behind nginx use --static /static/=DIR
]
