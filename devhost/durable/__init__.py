"""Durable Functions on durabletask's in-memory engine, through the real azure-functions-durable code path."""
from devhost.durable.runtime import DurableRuntime

__all__ = ["DurableRuntime"]
