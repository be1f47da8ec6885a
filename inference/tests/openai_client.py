"""Drives a running node with the official `openai` package, unchanged.

Usage: python3 openai_client.py BASE_URL   (for example http://127.0.0.1:8080/v1)
Exits non-zero, with the reason, if anything the client sees is off.
"""
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="unused")
messages = [{"role": "user", "content": "What is the capital of France?"}]

models = client.models.list()
model = models.data[0].id

whole = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=32)
text = whole.choices[0].message.content
assert text and text.strip(), f"empty answer: {whole}"
assert whole.choices[0].finish_reason in ("stop", "length"), whole
assert whole.usage.prompt_tokens > 0 and whole.usage.completion_tokens > 0, whole.usage

stream = client.chat.completions.create(
    model=model, messages=messages, temperature=0, max_tokens=32, stream=True,
    stream_options={"include_usage": True},
)
pieces, finish, usage = [], None, None
for chunk in stream:
    if chunk.choices:
        pieces.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    usage = chunk.usage or usage
streamed = "".join(pieces)
assert streamed == text, f"stream {streamed!r} != whole {text!r}"
assert finish == whole.choices[0].finish_reason, finish
assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens, usage

try:
    client.chat.completions.create(model=model, messages=[{"role": "robot", "content": "x"}])
    raise AssertionError("an unknown role was accepted")
except openai.BadRequestError as error:
    assert "robot" in str(error), error

print(f"openai client ok: {len(pieces)} chunks, {whole.usage.completion_tokens} tokens: {text!r}")
