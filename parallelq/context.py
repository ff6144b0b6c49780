"""The caller's context that Django keeps per thread, carried to a task's worker thread."""

from __future__ import annotations

import contextlib
from typing import Any

from django.conf import settings
from django.utils import timezone, translation


class Locale:
    """The caller's active language and timezone, which Django keeps per thread.

    Django keeps them in asgiref Locals, which a new thread does not inherit:
    a task on a worker thread applies them where they differ from the thread's
    own. A task run in its caller's thread needs nothing: it runs in a copy of
    the caller's context, where asgiref (3.9.1 and later) keeps them, and what
    a sibling run there before it changed stayed in that sibling's copy.
    """

    def __init__(self) -> None:
        self.language = translation.get_language()
        self.timezone = timezone.get_current_timezone()
        self.defaults = (
            self.language == settings.LANGUAGE_CODE
            and self.timezone == timezone.get_default_timezone()
        )

    def applied(self) -> contextlib.AbstractContextManager[Any]:
        """Return a context manager that makes them a worker thread's while it is open.

        The task runs in its copy of the caller's context, but the asgiref
        Locals in that copy belong to the caller's thread: asgiref 3.13 hides
        them from any other thread, so the task starts from Django's defaults,
        and earlier releases show the caller's own values. Either way there is
        nothing to apply when the caller's are the defaults: callers check
        `defaults` first, since reading them (two asgiref lookups) would cost
        more than the rest of a task's setup.
        """
        overrides: list[contextlib.AbstractContextManager[Any]] = []
        if translation.get_language() != self.language:
            overrides.append(translation.override(self.language))
        if timezone.get_current_timezone() != self.timezone:
            overrides.append(timezone.override(self.timezone))
        if not overrides:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        for override in overrides:
            stack.enter_context(override)
        return stack
