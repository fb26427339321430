from django.contrib import admin

from console.models import Run


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["started", "user", "command", "status", "exit_status", "duration"]
    list_filter = ["status", "command", "user"]
    search_fields = ["command", "output"]
    readonly_fields = [f.name for f in Run._meta.fields]
