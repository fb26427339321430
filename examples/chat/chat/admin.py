from django.contrib import admin

from chat.models import Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["created", "room", "user", "text"]
    list_filter = ["room", "user"]
    search_fields = ["text"]
