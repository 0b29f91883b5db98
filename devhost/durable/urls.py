"""The URLs the Durable extension hands out: the client binding payload and per-instance management links."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote, quote_plus

WEBHOOK_PATH = "/runtime/webhooks/durabletask"
# The extension's default connection name for the Azure Storage provider.
CONNECTION_NAME = "Storage"
# The placeholder the client binding uses; DurableOrchestrationClient replaces it with the instance id.
INSTANCE_PLACEHOLDER = "INSTANCEID"


def client_binding(base_url: str, hub_name: str) -> dict[str, Any]:
    """The durableClient binding value: hub, creation and management URL templates, and the RPC base URL.

    On Azure the RPC base URL is a loopback listener of the extension; here the same handler serves
    both it and the public webhooks, so both point at the host's /runtime/webhooks/durabletask/.
    """
    webhooks = base_url.rstrip("/") + WEBHOOK_PATH
    start = f"{webhooks}/orchestrators/{{functionName}}[/{{instanceId}}]"
    return {
        "taskHubName": hub_name,
        "creationUrls": {
            "createNewInstancePostUri": start,
            "createAndWaitOnNewInstancePostUri": f"{start}?timeout={{timeoutInSeconds}}"
                                                 f"&pollingInterval={{intervalInSeconds}}",
        },
        "managementUrls": management_links(base_url, hub_name, INSTANCE_PLACEHOLDER, with_rewind=True),
        "baseUrl": webhooks,
        "requiredQueryStringParameters": "",
        "rpcBaseUrl": f"{webhooks}/",
        "httpBaseUrl": "",
    }


def management_links(base_url: str, hub_name: str, instance_id: str, *, with_rewind: bool = False) -> dict[str, str]:
    """The links of a check-status response for one instance (rewind only in the binding's templates)."""
    instance = f"{base_url.rstrip('/')}{WEBHOOK_PATH}/instances/{quote_plus(instance_id)}"
    suffix = f"taskHub={quote(hub_name)}&connection={CONNECTION_NAME}"
    links = {
        "id": instance_id,
        "statusQueryGetUri": f"{instance}?{suffix}",
        "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{suffix}",
        "terminatePostUri": f"{instance}/terminate?reason={{text}}&{suffix}",
        "purgeHistoryDeleteUri": f"{instance}?{suffix}",
        "restartPostUri": f"{instance}/restart?{suffix}",
        "suspendPostUri": f"{instance}/suspend?reason={{text}}&{suffix}",
        "resumePostUri": f"{instance}/resume?reason={{text}}&{suffix}",
    }
    if with_rewind:
        links["rewindPostUri"] = f"{instance}/rewind?reason={{text}}&{suffix}"
    return links
