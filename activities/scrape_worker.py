"""Queue-triggered scrape workers: one message = one item; plus the poison-queue handler.

Transient fetch failures and database outages are rescheduled by the worker itself (a new message
with a visibility delay; see shared.services.item_worker), so a function run fails only on a crash or an
unexpected error: then the queue redelivers until maxDequeueCount and the host moves the message to
`<queue>-poison`, where `give_up_on_item` fails the item so the job never waits for it. Whoever
finishes a job's last item wakes its orchestration. Blocking work runs on the scrape pool, sized to
the queue trigger's concurrency (shared.adapters.executors).
"""
from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from orchestrators.job import ITEMS_DONE_EVENT
from shared.adapters.executors import Work
from shared.adapters.telemetry import record_queue_latency
from shared.composition import get_content_store, get_executors, get_item_queue, get_pool, worker_config
from shared.domain.messages import ItemMessage
from shared.services.item_worker import WorkResult, give_up_item, process_item

bp = df.Blueprint()
log = logging.getLogger(f"trawl.{__name__}")


@bp.queue_trigger(arg_name="msg", queue_name="%TRAWL_QUEUE_NAME%", connection="TrawlStorage")
@bp.durable_client_input(client_name="client")
async def scrape_item(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    message = ItemMessage.model_validate_json(msg.get_body())
    record_queue_latency(msg.insertion_time)
    result = await get_executors().run(Work.SCRAPE, process_item, get_pool(), get_item_queue(), message,
                                       worker_config(), bodies=get_content_store())
    log.info("job %s item %s: %s (delivery %s)", message.job_id, message.seq, result.action, msg.dequeue_count,
             extra=message.log_context())
    await _wake_orchestration_if_done(client, message, result)


@bp.queue_trigger(arg_name="msg", queue_name="%TRAWL_QUEUE_NAME%-poison", connection="TrawlStorage")
@bp.durable_client_input(client_name="client")
async def give_up_on_item(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    message = ItemMessage.model_validate_json(msg.get_body())
    result = await get_executors().run(Work.POISON, give_up_item, get_pool(), message)
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
