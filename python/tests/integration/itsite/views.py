import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import tasks


class Undone(Exception):
    """Raised by a view after it enqueued: its request's transaction rolls back."""


@csrf_exempt
def enqueue(request: HttpRequest, name: str) -> JsonResponse:
    task = getattr(tasks, name)
    args = json.loads(request.POST.get("args", "[]"))
    return JsonResponse({"id": task.enqueue(*args).id}, status=202)


@csrf_exempt
def enqueue_then_fail(request: HttpRequest) -> JsonResponse:
    tasks.add.enqueue(1, 1)
    raise Undone("the request failed after enqueue()")
