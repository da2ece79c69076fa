"""The shop's one-off work: plain @task functions, run by jobd (`manage.py jobd_task`)."""

from django.contrib.auth import get_user_model
from django.core.mail import send_mail

try:
    from django.tasks import task  # Django 6
except ImportError:
    from django_tasks import task  # Django 5.2 with the django-tasks backport


@task(queue_name="reports")
def long_report(month: str, email: str) -> dict[str, int]:
    """Count the month's new customers and mail the figure: jobd runs it as its
    `django_reports` task (one at a time, 15 minutes at most)."""
    year, number = (int(part) for part in month.split("-"))
    joined = get_user_model().objects.filter(date_joined__year=year, date_joined__month=number)
    count = joined.count()
    send_mail(f"Customers in {month}", f"{count} customers joined in {month}.", None, [email])
    return {"joined": count}
