"""Queue-triggered scrape workers: one message = one item; plus the poison-queue handler.

Retryable failures re-raise so the queue redelivers (visibilityTimeout) until maxDequeueCount,
then the host moves the message to `<queue>-poison`, where `give_up_on_item` fails the item so the
job never waits for it. Whoever finishes a job's last item wakes its orchestration.
"""
from __future__ import annotations

import asyncio
import logging

import azure.durable_functions as df
import azure.functions as func

from orchestrators.job import ITEMS_DONE_EVENT
from shared.item_worker import WorkResult, give_up_item, process_item
from shared.messages import ItemMessage
from shared.resources import fetch_limits, get_pool
from shared.settings import get_settings
from shared.telemetry import record_queue_latency

bp = df.Blueprint()
log = logging.getLogger(__name__)


@bp.queue_trigger(arg_name="msg", queue_name="%TRAWL_QUEUE_NAME%", connection="TrawlStorage")
@bp.durable_client_input(client_name="client")
async def scrape_item(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    message = ItemMessage.model_validate_json(msg.get_body())
    record_queue_latency(msg.insertion_time)
    limits = fetch_limits(get_settings())
    result = await asyncio.to_thread(process_item, get_pool(), message, limits)
    log.info("job %s item %s: %s (delivery %s)", message.job_id, message.seq, result.action, msg.dequeue_count,
             extra=message.log_context())
    await _wake_orchestration_if_done(client, message, result)


@bp.queue_trigger(arg_name="msg", queue_name="%TRAWL_QUEUE_NAME%-poison", connection="TrawlStorage")
@bp.durable_client_input(client_name="client")
async def give_up_on_item(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    message = ItemMessage.model_validate_json(msg.get_body())
    result = await asyncio.to_thread(give_up_item, get_pool(), message)
    log.warning("job %s item %s poisoned: %s", message.job_id, message.seq, result.action, extra=message.log_context())
    await _wake_orchestration_if_done(client, message, result)


async def _wake_orchestration_if_done(client: df.DurableOrchestrationClient, message: ItemMessage,
                                      result: WorkResult) -> None:
    if not result.finished_job:
        return
    try:
        await client.raise_event(str(message.job_id), ITEMS_DONE_EVENT, None)
    except Exception as exc:  # the event only hurries the orchestration: its next tick reads the same rows
        log.warning("job %s: could not raise %s: %s", message.job_id, ITEMS_DONE_EVENT, exc, extra=message.log_context())
