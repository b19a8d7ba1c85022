"""The API's edge for what arrives outside a JSON body: the path, the query string, and Django's
own refusals of a request raised in views that are not DRF's (DRF views get the same answers from
`errors.api_exception_handler`). JSON bodies are checked by `parsers.json_loads`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse
from whitenoise.middleware import WhiteNoiseMiddleware

from .errors import ApiError, InvalidParameter, error_body, is_api_path, request_refusal
from .parsers import printable


def _response(exc: ApiError) -> JsonResponse:
    return JsonResponse(
        error_body(exc.status_code, exc.code, exc.message, exc.details, **exc.extra), status=exc.status_code
    )


def url_refusal(request: HttpRequest) -> ApiError | None:
    """400 for a NUL in the path or the query string (PostgreSQL text cannot hold it).

    Percent-decoding turns bytes that are not UTF-8 into U+FFFD, so lone surrogates cannot come
    this way; NUL can (`%00`)."""
    if "\x00" in request.path:
        return ApiError("The path must not contain NUL characters", code="INVALID_PATH")
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            parameter = printable(name)
            return InvalidParameter(parameter, f"Invalid parameter '{parameter}': NUL characters are not allowed")
    return None


class BothModes:
    """A middleware that runs in the mode of the chain around it, sync or async, so it adds no
    thread crossing under the ASGI server (Django's MiddlewareMixin runs its hooks in
    sync_to_async). Subclasses give `before` (a response ends the request there) and/or `after`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        response = self.before(request)
        return response if response is not None else self.after(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        response = self.before(request)
        return response if response is not None else self.after(request, await self.get_response(request))

    def before(self, request: HttpRequest) -> HttpResponse | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        return response


class ApiEdgeMiddleware(BothModes):
    """Refuse, on API paths, requests whose URL no endpoint can use; answer Django's refusals
    (RequestDataTooBig, TooManyFieldsSent) with the error envelope instead of a 400 page."""

    def before(self, request: HttpRequest) -> HttpResponse | None:
        refusal = url_refusal(request) if _checked(request) else None
        return _response(refusal) if refusal else None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        refusal = request_refusal(exception) if _checked(request) else None
        return _response(refusal) if refusal else None


def _checked(request: HttpRequest) -> bool:
    # /v1/ answers in OpenAI's error format and reads its body through parsers.json_loads itself.
    return is_api_path(request.path) and not request.path.startswith("/v1/")


class StaticFilesMiddleware(BothModes, WhiteNoiseMiddleware):
    """WhiteNoise in both modes: its own middleware is sync-only, which under the ASGI server
    costs every request (API calls included) two more thread crossings. The lookup is
    WhiteNoise's (a dict, or a stat with autorefresh)."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        WhiteNoiseMiddleware.__init__(self, get_response)
        BothModes.__init__(self, get_response)

    def before(self, request: HttpRequest) -> HttpResponse | None:
        static_file = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        return self.serve(static_file, request) if static_file is not None else None
