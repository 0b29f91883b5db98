"""Runs one activity work item through the app's activity function, reporting failures as the extension does."""
from __future__ import annotations

import traceback
from dataclasses import dataclass

import durabletask.internal.helpers as helpers
import durabletask.internal.orchestrator_service_pb2 as pb
from azure.functions import meta

from devhost.durable.catalog import FunctionCatalog, UnknownFunctionError
from devhost.invoker import FunctionFailedError, FunctionTimeoutError, Invoker


@dataclass
class ActivityRunner:
    """Invokes activities with the input the orchestrator sent (JSON text, decoded by ActivityTriggerConverter)."""

    catalog: FunctionCatalog
    invoker: Invoker

    def respond(self, request: pb.ActivityRequest, completion_token: str) -> pb.ActivityResponse:
        """Run the activity; its JSON result, or failure details whose message becomes the task's Reason."""
        response = pb.ActivityResponse(instanceId=request.orchestrationInstance.instanceId, taskId=request.taskId,
                                       completionToken=completion_token)
        try:
            result = self._run(request)
        except FunctionFailedError as exc:
            response.failureDetails.CopyFrom(_failure(request.name, exc.__cause__ or exc))
        except (UnknownFunctionError, FunctionTimeoutError) as exc:
            response.failureDetails.CopyFrom(_failure(request.name, exc))
        else:
            response.result.value = result
        return response

    def _run(self, request: pb.ActivityRequest) -> str:
        spec = self.catalog.activity(request.name)
        # The SDK always sends JSON text ("null" for no input); the extension passes it on as a JSON datum.
        payload = request.input.value if request.HasField("input") else "null"
        datum = self.invoker.invoke(spec, meta.Datum(type="json", value=payload), reason="(null)")
        return str(datum.value) if datum is not None else "null"


def _failure(name: str, cause: BaseException) -> pb.TaskFailureDetails:
    details = "".join(traceback.format_exception(cause))
    return pb.TaskFailureDetails(
        errorType=helpers.get_qualified_name(type(cause)),
        errorMessage=f"Activity function '{name}' failed: {type(cause).__name__}: {cause}",
        stackTrace=helpers.get_string_value(details),
    )


def failed_activity(request: pb.ActivityRequest, completion_token: str, message: str) -> pb.ActivityResponse:
    """A failed result for an activity devhost itself could not run."""
    return pb.ActivityResponse(instanceId=request.orchestrationInstance.instanceId, taskId=request.taskId,
                               completionToken=completion_token,
                               failureDetails=pb.TaskFailureDetails(errorMessage=message))
