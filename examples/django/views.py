"""A Django view that starts the long report in the background and answers at once."""

from django.http import JsonResponse
from django.views.decorators.http import require_POST

from .jobd_spool import submit


@require_POST
def request_report(request):
    month = request.POST.get("month", "")
    # The month travels as an argument, never through a shell: no quoting to get wrong.
    name = submit("long_report", "--month", month, "--email", request.user.email)
    return JsonResponse({"queued": name}, status=202)
