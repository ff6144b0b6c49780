"""Tasks may use Django's database API: its connections follow CONN_MAX_AGE, as in a request."""

from __future__ import annotations

from django.db import connection
from django.http import JsonResponse
from django.test import override_settings
from django.urls import path

from parallelq import parallel
from tests.base import PostgresTestCase


def django_pid() -> int:
    """Return the backend pid of this thread's Django connection, after a 0.1 s sleep."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.1), pg_backend_pid()")
        return int(cursor.fetchone()[1])


def django_tasks(request):
    """Run four tasks that each query through Django's own connection."""
    return JsonResponse({"request": django_pid(), "tasks": parallel(*[django_pid] * 4)})


urlpatterns = [path("django/", django_tasks)]


@override_settings(ROOT_URLCONF=__name__)
class DjangoConnectionTests(PostgresTestCase):
    def pids(self) -> set[int]:
        return {pid for pid, _, _ in self.other_backends()}

    def test_tasks_use_connections_of_their_own_that_close_with_conn_max_age_0(self):
        self.assertEqual(connection.settings_dict["CONN_MAX_AGE"], 0)
        pids = self.client.get("/django/").json()
        on_workers = set(pids["tasks"]) - {pids["request"]}
        # A task that found no free worker ran in the view's thread, on its connection.
        self.assertGreaterEqual(len(on_workers), 2)
        # Closed by the time the response is back; the server may take a moment to
        # end the backend once its client has gone.
        self.assertTrue(
            self.wait_for(lambda: not on_workers & self.pids(), 2.0),
            f"Django connections of tasks still open: {on_workers & self.pids()}",
        )
