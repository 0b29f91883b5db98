"""An app with a binding devhost does not run: it must refuse to start, naming it."""
import azure.functions as func

app = func.FunctionApp()


@app.blob_trigger(arg_name="blob", path="uploads/{name}", connection="AzureWebJobsStorage")
def on_upload(blob: func.InputStream) -> None:
    pass
