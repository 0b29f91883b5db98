"""`trawl`: the command-line client of Trawl's public HTTP API (`/api/...`), with live job progress.

It talks to the API only, never to the database or the Durable endpoints, so it works the same
against `make run` on this machine and against a deployment behind API Management.
"""

__version__ = "0.1.0"
