"""An OpenAI-compatible HTTP server over one pipeline: /v1/models and /v1/chat/completions (streaming too).

One model is in memory and one generation runs at a time: requests wait in a single-worker queue, and
each generation has its own caches, so concurrent clients never see one another's state. Every bad
request is answered with a 4xx in OpenAI's error shape, {"error": {"message", "type", "param", "code"}}.
Needs the `serve` extra (fastapi, uvicorn).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from specflash.media import DEFAULT_MAX_PIXELS, MediaError, decode_data_url, load_image
from specflash.pipeline import SEEDS, ChatResult, Pipeline


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 32 * 2**20
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_images: int = 16
    max_tokens: int = 1024
    default_max_tokens: int = 256


class ApiError(Exception):
    """A request the server refuses; becomes an OpenAI-shaped JSON error."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class _Cancelled(Exception):
    """Raised inside a generation whose streaming client went away, to stop it early."""


# -- request schema (fields OpenAI clients send that do not change the output are accepted and ignored) --
class ImageURL(BaseModel):
    url: str


class ContentPart(BaseModel):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | str | None = None


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    # None: a fresh seed per request, as OpenAI samples anew each time. Bounded here, so that an error
    # names "seed" (the pipeline's own check would be reported against the messages).
    seed: int | None = Field(None, ge=SEEDS.start, lt=SEEDS.stop)
    n: int = Field(1, ge=1, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


# -- the pieces of a request ------------------------------------------------------------------------
class ImageSource:
    """Turns an image_url into a PIL image: data URLs always; local paths only under `allow_files`."""

    def __init__(self, allow_files: Path | None, max_pixels: int) -> None:
        self.allow_files = allow_files.resolve() if allow_files is not None else None
        self.max_pixels = max_pixels

    def load(self, url: str) -> Image.Image:
        if url.startswith("data:"):
            return decode_data_url(url, self.max_pixels)
        if url.startswith(("http://", "https://")):
            raise ApiError(
                400,
                "remote image URLs are not fetched; send the image as a base64 data URL",
                "messages",
                "unsupported_image_url",
            )
        if self.allow_files is None:
            raise ApiError(
                403,
                "local image files are refused (start the server with --allow-files DIR)",
                "messages",
                "file_access_denied",
            )
        path = Path(url.removeprefix("file://"))
        path = (path if path.is_absolute() else self.allow_files / path).resolve()
        if not path.is_relative_to(self.allow_files):
            raise ApiError(
                403, f"image path {url!r} is outside the allowed directory", "messages", "file_access_denied"
            )
        return load_image(path, self.max_pixels)


def _conversation(request: ChatRequest, images: ImageSource, limits: Limits) -> tuple[list[dict], list[Image.Image]]:
    """OpenAI messages -> the pipeline's chat messages ({"type": "image"} parts) and the images in order."""
    messages, loaded = [], []
    for message in request.messages:
        content = (
            message.content
            if isinstance(message.content, list)
            else [ContentPart(type="text", text=message.content or "")]
        )
        parts = []
        for part in content:
            if part.type == "text":
                parts.append({"type": "text", "text": part.text or ""})
                continue
            if part.image_url is None:
                raise ApiError(400, "an image_url part needs an image_url", "messages", "invalid_image")
            if len(loaded) == limits.max_images:
                raise ApiError(400, f"at most {limits.max_images} images per request", "messages", "too_many_images")
            url = part.image_url if isinstance(part.image_url, str) else part.image_url.url
            loaded.append(images.load(url))
            parts.append({"type": "image"})
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": parts})
    return messages, loaded


def _usage(result: ChatResult) -> dict:
    completion = len(result.token_ids)
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": result.prompt_tokens + completion,
    }


def _speculative_stats(pipe: Pipeline, result: ChatResult) -> dict:
    stats = result.stats
    return {
        "draft": pipe.draft_name,
        "draft_trained": pipe.draft_trained,
        "tau": stats.tau,
        "cycles": stats.cycles,
        "draft_forwards": stats.draft_forwards,
        "tree_sizes": stats.tree_sizes,
        "accept_lengths": stats.accept_lengths[0],
        "alpha_by_depth": stats.alpha_by_depth,
        "wall_time": stats.wall_time,
        "prefill_time": stats.prefill_time,
        "sizing_time": stats.sizing_time,
        "draft_time": stats.draft_time,
        "verify_time": stats.verify_time,
        "tokens_per_second": result.tokens_per_second,
    }


def _validation_error(error: ValidationError) -> ApiError:
    first = error.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    return ApiError(400, f"{param}: {first['msg']}" if param else first["msg"], param, "invalid_value")


# -- the app ---------------------------------------------------------------------------------------
class Server:
    """The app's state: the pipeline, its single worker, the request limits."""

    def __init__(self, pipe: Pipeline, allow_files: Path | None, limits: Limits) -> None:
        self.pipe, self.limits = pipe, limits
        self.images = ImageSource(allow_files, limits.max_image_pixels)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="specflash-generate")
        self.model_id = pipe.target_name
        self.created = int(time.time())

    async def read_request(self, request: Request) -> ChatRequest:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            raise ApiError(413, f"request body over {self.limits.max_body_bytes} bytes", None, "body_too_large")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.limits.max_body_bytes:
                raise ApiError(413, f"request body over {self.limits.max_body_bytes} bytes", None, "body_too_large")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ApiError(400, f"the body is not valid JSON ({error})", None, "invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object", None, "invalid_json")
        try:
            chat = ChatRequest.model_validate(data)
        except ValidationError as error:
            raise _validation_error(error) from None
        if chat.model not in (None, self.model_id):
            raise ApiError(
                404,
                f"model {chat.model!r} is not served here; this server serves {self.model_id!r}",
                "model",
                "model_not_found",
            )
        if chat.stop:
            raise ApiError(
                400,
                "stop sequences are not supported; generation stops at the model's stop token",
                "stop",
                "unsupported_parameter",
            )
        max_tokens = chat.max_completion_tokens or chat.max_tokens
        if max_tokens is not None and max_tokens > self.limits.max_tokens:
            raise ApiError(400, f"max_tokens is at most {self.limits.max_tokens}", "max_tokens", "invalid_value")
        return chat

    def run(self, chat: ChatRequest, stream: Any = None) -> ChatResult:
        """What the worker runs: decode the request's media, then generate. ValueErrors are the request's fault."""
        default = min(self.limits.default_max_tokens, self.limits.max_tokens)  # the operator's cap holds here too
        max_tokens = chat.max_completion_tokens or chat.max_tokens or default
        try:
            messages, images = _conversation(chat, self.images, self.limits)
            return self.pipe.chat_messages(
                messages,
                images,
                max_new_tokens=max_tokens,
                temperature=chat.temperature,
                top_p=chat.top_p,
                seed=chat.seed if chat.seed is not None else secrets.randbelow(2**31),
                stream=stream,
            )
        except MediaError as error:
            raise ApiError(400, str(error), "messages", "invalid_image") from None
        except ValueError as error:
            code = "context_length_exceeded" if "context" in str(error) else "invalid_value"
            raise ApiError(400, str(error), "messages", code) from None

    def completion(self, result: ChatResult, completion_id: str) -> dict:
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(result),
            "specflash": _speculative_stats(self.pipe, result),
        }

    def chunk(self, completion_id: str, delta: dict, finish_reason: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    async def stream(self, chat: ChatRequest, completion_id: str) -> StreamingResponse | JSONResponse:
        """Start the generation and wait for its first event, so a refused request still gets a 4xx."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()

        def on_text(delta: str) -> None:
            if cancelled.is_set():
                raise _Cancelled
            loop.call_soon_threadsafe(events.put_nowait, ("text", delta))

        def work() -> None:
            try:
                event = ("done", self.run(chat, on_text))
            except _Cancelled:
                return
            except ApiError as error:
                event = ("error", error)
            except Exception as error:  # reported to the client; the server carries on
                event = ("error", ApiError(500, f"generation failed: {error}", None, "internal_error", "server_error"))
            loop.call_soon_threadsafe(events.put_nowait, event)

        self.worker.submit(work)
        first = await events.get()
        if first[0] == "error":
            cancelled.set()
            return JSONResponse(first[1].body(), status_code=first[1].status)

        async def sse() -> AsyncIterator[str]:
            try:
                yield self.chunk(completion_id, {"role": "assistant", "content": ""})
                event = first
                while True:
                    kind, value = event
                    if kind == "text":
                        yield self.chunk(completion_id, {"content": value})
                    elif kind == "error":
                        yield f"data: {json.dumps(value.body())}\n\n"
                        break
                    else:
                        yield self.chunk(
                            completion_id, {}, value.finish_reason, specflash=_speculative_stats(self.pipe, value)
                        )
                        if chat.stream_options and chat.stream_options.include_usage:
                            yield f"data: {json.dumps(self._usage_chunk(completion_id, value))}\n\n"
                        break
                    event = await events.get()
                yield "data: [DONE]\n\n"
            finally:
                cancelled.set()  # a client gone mid-stream stops its generation at the next token

        return StreamingResponse(sse(), media_type="text/event-stream")

    def _usage_chunk(self, completion_id: str, result: ChatResult) -> dict:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model_id,
            "choices": [],
            "usage": _usage(result),
        }


def create_app(pipe: Pipeline, allow_files: Path | None = None, limits: Limits | None = None) -> FastAPI:
    server = Server(pipe, allow_files, limits or Limits())
    app = FastAPI(title="specflash", version="1")

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException) -> JSONResponse:
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return JSONResponse(
            ApiError(error.status_code, str(error.detail), None, None, kind).body(), status_code=error.status_code
        )

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [{"id": server.model_id, "object": "model", "created": server.created, "owned_by": "specflash"}],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        chat = await server.read_request(request)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if chat.stream:
            return await server.stream(chat, completion_id)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(server.worker, server.run, chat)
        except ApiError:
            raise
        except Exception as error:  # reported to the client; the server carries on
            raise ApiError(500, f"generation failed: {error}", None, "internal_error", "server_error") from None
        return JSONResponse(server.completion(result, completion_id))

    app.state.server = server
    return app


def run_server(
    pipe: Pipeline,
    host: str = "127.0.0.1",
    port: int = 8000,
    allow_files: Path | None = None,
    limits: Limits | None = None,
) -> None:
    """Serve until interrupted."""
    uvicorn.run(create_app(pipe, allow_files, limits), host=host, port=port, log_level="info")
