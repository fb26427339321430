from django.contrib import admin

from jobs.models import Contact, Heartbeat, Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["created", "owner", "filename", "state", "imported", "rejected"]
    list_filter = ["state", "owner"]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "company", "owner", "job"]
    search_fields = ["name", "email", "company"]


admin.site.register(Heartbeat)
