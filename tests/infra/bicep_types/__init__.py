"""The offline Bicep type check: the checker, and the type definitions it reads from the azure-mgmt-* SDKs (README.md)."""
