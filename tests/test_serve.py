"""The OpenAI-compatible server on a loopback port, driven by the official `openai` client and raw httpx."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from test_pipeline_helpers import png_bytes, scene_image, target_arg

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

import specflash  # noqa: E402
from specflash.pipeline import UntrainedDraftWarning  # noqa: E402
from specflash.serve import Limits, create_app  # noqa: E402

MAX_TOKENS = 20
LIMITS = Limits(max_body_bytes=400_000, max_image_pixels=512 * 512, max_tokens=64)


@pytest.fixture(scope="module")
def pipe() -> specflash.Pipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedDraftWarning)
        return specflash.load(target=target_arg())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("allowed")
    scene_image(2).save(folder / "scene.png")
    return folder


@pytest.fixture(scope="module")
def base_url(pipe, files):
    """A server on a free loopback port, in a thread, shut down after the module's tests."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(pipe, allow_files=files, limits=LIMITS), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def model(client):
    return client.models.list().data[0].id


def _data_url(image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def _messages(image=None, text: str = "Describe the image in detail.") -> list[dict]:
    content: list[dict] = [{"type": "text", "text": text}]
    if image is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": _data_url(image)}})
    return [{"role": "user", "content": content}]


def _stream_text(client, model, messages, temperature: float = 0, seed: int = 0) -> tuple[str, list]:
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=MAX_TOKENS,
            temperature=temperature,
            seed=seed,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def test_models_lists_the_one_model(client, pipe):
    assert [m.id for m in client.models.list().data] == [pipe.target_name]


def test_plain_and_streamed_completions_with_an_image_agree(client, model, pipe):
    image = scene_image(0)
    reply = client.chat.completions.create(model=model, messages=_messages(image), max_tokens=MAX_TOKENS, temperature=0)
    text = reply.choices[0].message.content
    local = pipe.chat("Describe the image in detail.", images=[image], max_new_tokens=MAX_TOKENS)
    assert text == local.text
    assert reply.usage.completion_tokens == len(local.token_ids)
    assert reply.usage.prompt_tokens == local.prompt_tokens
    assert reply.usage.total_tokens == local.prompt_tokens + len(local.token_ids)
    assert reply.choices[0].finish_reason == local.finish_reason
    stats = reply.model_extra["specflash"]
    assert stats["cycles"] >= 1 and stats["draft_forwards"] > 0
    assert len(stats["tree_sizes"]) == stats["cycles"] - 1 and stats["sizing_time"] >= 0
    assert sum(stats["accept_lengths"]) == len(local.token_ids)

    streamed, chunks = _stream_text(client, model, _messages(image))
    assert streamed == text
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].model_extra["specflash"]["tau"] > 0
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_sampled_completions_are_seeded_and_stream_the_same_text(client, model):
    messages = _messages(scene_image(1))
    replies = [
        client.chat.completions.create(
            model=model, messages=messages, max_tokens=MAX_TOKENS, temperature=1.0, seed=seed
        )
        .choices[0]
        .message.content
        for seed in (3, 3, 4)
    ]
    assert replies[0] == replies[1] != replies[2]
    assert _stream_text(client, model, messages, temperature=1.0, seed=3)[0] == replies[0]


def test_images_from_the_allowed_directory_only(client, model, files):
    def ask(url: str):
        messages = [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Describe."}],
            }
        ]
        return client.chat.completions.create(model=model, messages=messages, max_tokens=4, temperature=0)

    assert ask(f"file://{files / 'scene.png'}").usage.completion_tokens == 4
    assert ask("scene.png").usage.completion_tokens == 4
    for outside in (f"file://{files / '..' / 'x.png'}", "/etc/passwd", "../x.png"):
        with pytest.raises(openai.PermissionDeniedError):
            ask(outside)
    with pytest.raises(openai.BadRequestError, match="remote image URLs"):
        ask("https://example.com/a.png")


def _raw(base_url: str, body: bytes | dict) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{base_url}/chat/completions", content=content, headers={"content-type": "application/json"}, timeout=60
    )


BAD_REQUESTS = {
    "malformed JSON": (b'{"messages": [', 400, "invalid_json"),
    "not an object": (b"[1, 2]", 400, "invalid_json"),
    "no messages": ({"messages": []}, 400, "invalid_value"),
    "missing messages": ({"model": "x"}, 400, "invalid_value"),
    "negative max_tokens": ({"messages": _messages(), "max_tokens": -1}, 400, "invalid_value"),
    "max_tokens over the limit": ({"messages": _messages(), "max_tokens": 10_000}, 400, "invalid_value"),
    "bad role": ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "invalid_value"),
    "temperature out of range": ({"messages": _messages(), "temperature": 5}, 400, "invalid_value"),
    "n > 1": ({"messages": _messages(), "n": 2}, 400, "invalid_value"),
    "stop sequences": ({"messages": _messages(), "stop": ["."]}, 400, "unsupported_parameter"),
    "placeholder text": ({"messages": _messages(text="What is <image>?")}, 400, "invalid_value"),
    "unknown model": ({"messages": _messages(), "model": "gpt-4"}, 404, "model_not_found"),
    "undecodable image": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"junk").decode()},
                        },
                    ],
                }
            ]
        },
        400,
        "invalid_image",
    ),
    "bad base64": (
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}
            ]
        },
        400,
        "invalid_image",
    ),
    "too many pixels": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": _data_url(scene_image(0).resize((1024, 1024)))}}
                    ],
                }
            ]
        },
        400,
        "invalid_image",
    ),
    "oversized body": ({"messages": [{"role": "user", "content": "x" * 500_000}]}, 413, "body_too_large"),
    "prompt over the context": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": _data_url(scene_image(0))}}] * 16,
                }
            ],
            "max_tokens": 8,
        },
        400,
        "context_length_exceeded",
    ),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(base_url, case, stream):
    body, status, code = BAD_REQUESTS[case]
    if stream and isinstance(body, dict):
        body = {**body, "stream": True}
    response = _raw(base_url, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["code"] == code
    ok = _raw(base_url, {"messages": _messages(text="Hello."), "max_tokens": 2})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("seed", 1e23, "seed"),
        ("seed", 10**23, "seed"),
        ("seed", -(2**64), "seed"),
        ("messages", [{"role": "user", "content": "<|vision_start|>"}], "messages"),
        (
            "messages",
            [{"role": "user", "content": [{"type": "image_url", "image_url": "data:text/plain;base64,aA=="}]}],
            "messages",
        ),
    ],
)
def test_errors_name_the_parameter_at_fault(base_url, field, value, param):
    response = _raw(base_url, {"messages": _messages(text="Hello."), field: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and "BytesIO" not in error["message"], error


def test_unknown_routes_answer_in_the_openai_shape(base_url):
    response = httpx.get(f"{base_url}/nope", timeout=30)
    assert response.status_code == 404 and "message" in response.json()["error"]


def test_ten_concurrent_streaming_clients_get_the_single_client_answer(client, model):
    image = scene_image(5)
    alone, _ = _stream_text(client, model, _messages(image))
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: _stream_text(client, model, _messages(image))[0], range(10)))
    assert answers == [alone] * 10


def test_ten_concurrent_sampled_streams_do_not_mix(client, model):
    # Sampled answers differ from seed to seed, so any mixing of two requests' state would show.
    messages = _messages(scene_image(7))
    alone = [_stream_text(client, model, messages, temperature=1.0, seed=seed)[0] for seed in range(10)]
    assert len(set(alone)) > 1
    with ThreadPoolExecutor(max_workers=10) as pool:
        together = list(pool.map(lambda seed: _stream_text(client, model, messages, 1.0, seed)[0], range(10)))
    assert together == alone


def test_a_client_that_leaves_mid_stream_does_not_break_the_next(base_url, client, model):
    with httpx.stream(
        "POST",
        f"{base_url}/chat/completions",
        timeout=60,
        json={"messages": _messages(scene_image(6)), "max_tokens": 64, "stream": True},
    ) as response:
        next(response.iter_lines())
    text, _ = _stream_text(client, model, _messages(scene_image(6)))
    reply = client.chat.completions.create(
        model=model, messages=_messages(scene_image(6)), max_tokens=MAX_TOKENS, temperature=0
    )
    assert text == reply.choices[0].message.content


def test_a_request_without_max_tokens_stays_under_the_servers_cap(base_url):
    # the server's default (256) is over LIMITS.max_tokens: the cap must hold when a client leaves it out
    assert Limits().default_max_tokens > LIMITS.max_tokens
    reply = _raw(base_url, {"messages": [{"role": "user", "content": "hi"}], "temperature": 0})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    usage, finish = body["usage"]["completion_tokens"], body["choices"][0]["finish_reason"]
    # a stop token may end the answer at the cap itself; a cut answer ends exactly there
    assert usage <= LIMITS.max_tokens if finish == "stop" else usage == LIMITS.max_tokens
