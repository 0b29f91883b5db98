"""The app's Entra ID credential, for Storage and PostgreSQL alike."""
from __future__ import annotations

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.settings import Settings


def azure_credential(settings: Settings) -> TokenCredential:
    """The managed identity named by AZURE_CLIENT_ID, else the default chain (developer sign-in)."""
    if settings.managed_identity_client_id:
        return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    return DefaultAzureCredential()
