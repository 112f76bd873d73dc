"""Errors in the hosted API's shape, so the official client raises its usual exception classes."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class APIError(Exception):
    """An error response: HTTP status plus OpenAI's ``error.message/type/param/code``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The JSON body and headers the client expects."""
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def not_found(kind: str, identifier: str, param: str | None = None) -> APIError:
    """404 for a model, file or job that does not exist."""
    if kind == "model":
        message = f"The model `{identifier}` does not exist or you do not have access to it."
        return APIError(404, message, param=param or "model", code="model_not_found")
    return APIError(404, f"No such {kind}: {identifier}", param=param, code=f"{kind.replace(' ', '_')}_not_found")


async def api_error_handler(_: Request, error: APIError) -> JSONResponse:
    """Render :class:`APIError`."""
    return error.response()


async def validation_error_handler(_: Request, error: RequestValidationError) -> JSONResponse:
    """A malformed request body: 400 naming the first offending parameter."""
    first = error.errors()[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    return APIError(400, f"Invalid request: {first.get('msg')}", param=".".join(location) or None).response()
