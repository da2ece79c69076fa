"""Start the monthly report in the background, answer at once, and tell how it went."""

import re

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from .tasks import long_report

try:
    from django.tasks.exceptions import TaskResultDoesNotExist
except ImportError:
    from django_tasks.exceptions import TaskResultDoesNotExist

MONTH = re.compile(r"\d{4}-\d{2}")


@require_POST
@login_required
def request_report(request: HttpRequest) -> JsonResponse:
    month = request.POST.get("month", "")
    if not MONTH.fullmatch(month):
        return JsonResponse({"error": "month is YYYY-MM"}, status=400)
    # The arguments travel as JSON in the spool file, never on a command line.
    result = long_report.enqueue(month, request.user.email)
    return JsonResponse({"id": result.id}, status=202)


@require_GET
@login_required
def report_status(request: HttpRequest, result_id: str) -> JsonResponse:
    try:
        result = long_report.get_result(result_id)
    except TaskResultDoesNotExist:
        raise Http404("no such report") from None
    answer = {"status": result.status, "attempts": result.attempts}
    if result.status == "SUCCESSFUL":
        answer["value"] = result.return_value
    elif result.status == "FAILED":
        answer["error"] = result.errors[-1].traceback.splitlines()[-1]
    return JsonResponse(answer)
