"""The Lambda's entry point, shipped as the top-level module ``task_api`` so the function's
handler setting stays ``task_api.handler`` while the code lives in this package."""

from sdfleet.components.task_api.handler import handler

__all__ = ["handler"]
