import io

from django import forms

from jobs.tasks import BadFile, read_header

#: The largest file the form takes.
MAX_SIZE = 5 * 1024 * 1024


class UploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
        help_text="UTF-8, first line: name,email,company",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_SIZE:
            raise forms.ValidationError(f"At most {MAX_SIZE // (1024 * 1024)} MB, please.")
        # Only the header here; the rows are the import task's business.
        upload.seek(0)
        try:
            first = upload.readline(64 * 1024)
            read_header(io.StringIO(first.decode("utf-8-sig")))
        except UnicodeDecodeError:
            raise forms.ValidationError("This is not a CSV file of UTF-8 text.") from None
        except BadFile as exc:
            raise forms.ValidationError(f"Not importable: {exc}.") from None
        finally:
            upload.seek(0)
        return upload
