"""Sample app for devhost HTTP fidelity tests."""
import asyncio
import json

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="items/{id:guid}", methods=["GET"])
def get_item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"id": req.route_params["id"]}), mimetype="application/json")


@app.route(route="items/{id:int}", methods=["GET"])
def get_numbered_item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"number": req.route_params["id"]}), mimetype="application/json")


@app.route(route="items/special", methods=["GET"])
def get_special(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("special")


@app.route(route="files/{*path}", methods=["GET"])
def get_file(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.route_params.get("path", ""))


@app.route(route="echo", methods=["POST", "PUT"])
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(0)
    body = {
        "method": req.method,
        "url": req.url,
        "params": dict(req.params),
        "header": req.headers.get("x-trawl-test"),
        "json": req.get_json(),
    }
    return func.HttpResponse(json.dumps(body), status_code=201, mimetype="application/json",
                             headers={"X-Echo": "yes"})


@app.route(route="text")
def text(req: func.HttpRequest) -> str:
    return "plain text"


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom")


@app.route(route="settings/{name}", methods=["GET"])
def setting(req: func.HttpRequest) -> func.HttpResponse:
    import os

    return func.HttpResponse(os.environ.get(req.route_params["name"], "<unset>"))


@app.route(route="slow", methods=["GET"])
def slow(req: func.HttpRequest) -> func.HttpResponse:
    import time

    time.sleep(float(req.params.get("seconds", "3")))
    return func.HttpResponse("finally")
