"""Client messages fuzzed: the parser and a live hub answer anything with a message or a
documented close code, never an unexpected error, and other readers never notice."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawws import CLOSE, PING, PONG, TEXT, masked, open_raw, parse_frames, read_until_quiet

from stack import Client, Stack
from ticker import protocol
from ticker.config import Vocabulary
from ticker.protocol import CloseCode, ProtocolError

VOCAB = Vocabulary()
DOCUMENTED = {int(code) for code in CloseCode}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(["en", "ar", "es", "EN", "Africa", "Politics", "e1:1", "a:\u00b2", "\ud800"]),
)
messages = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["ping", "subscribe", "pong", "", "SUBSCRIBE"])},
        optional={
            "edition": field_values,
            "region": field_values,
            "category": field_values,
            "since": field_values,
            "extra": field_values,
        },
    ).map(json.dumps),
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(messages)
def test_the_parser_answers_anything_with_a_message_or_a_protocol_error(text: str) -> None:
    try:
        message = protocol.parse_client_message(text, VOCAB)
    except ProtocolError as exc:
        assert exc.code in DOCUMENTED
        assert len(exc.reason.encode()) <= 123  # it must fit in a Close frame
        return
    assert isinstance(message, protocol.Ping | protocol.Subscribe)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory):
    async with Stack(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


async def test_a_live_hub_answers_fuzzed_messages_and_keeps_serving(stack, caplog):
    caplog.set_level(logging.WARNING)
    examples: list[str] = []

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(messages)
    def collect(text: str) -> None:
        examples.append(text)

    collect()
    async with Client.connect(stack.ws_url()) as bystander:
        await bystander.next()
        for text in examples:
            reader, writer, status = await open_raw(stack.hub.port, "/ws?edition=en")
            assert status.startswith(b"HTTP/1.1 101")
            greeting = await reader.read(65536)
            writer.write(masked(TEXT, text.encode("utf-8", "surrogatepass")))
            frames = parse_frames(greeting + await read_until_quiet(reader, 0.1))
            writer.close()
            opcodes = [f.opcode for f in frames]
            assert opcodes[0] == TEXT, text  # the greeting
            if CLOSE in opcodes:
                close = frames[opcodes.index(CLOSE)]
                assert close.close_code in DOCUMENTED, (text, close)
                after = opcodes[opcodes.index(CLOSE) + 1 :]
                assert set(after) <= {CLOSE, PING, PONG}, (text, frames)
        item = await stack.post(headline="Still live for everyone else")
        assert (await bystander.next_event())["item"]["id"] == item["id"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
