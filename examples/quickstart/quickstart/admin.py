from django.contrib import admin

from quickstart.models import Greeting

admin.site.register(Greeting, list_display=["name", "created"])
