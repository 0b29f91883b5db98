"""devhost: a local Azure Functions host for v2-model Python apps, for development and tests only.

It runs an app folder's `function_app.py` unchanged with the real host's trigger semantics (HTTP,
Storage queues, timers) and runs Durable Functions through the real azure-functions-durable replay
code on Microsoft's in-memory `durabletask` engine. Production is Azure Functions.
"""
