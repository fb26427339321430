from django import forms

from chat.models import ROOM_NAME


class RoomForm(forms.Form):
    name = forms.RegexField(
        regex=rf"^{ROOM_NAME}$",
        max_length=50,
        label="Room",
        error_messages={"invalid": "Use letters, digits, - and _ (at most 50)."},
        widget=forms.TextInput(attrs={"placeholder": "lobby", "autofocus": True}),
    )
