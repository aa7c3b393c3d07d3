"""Edge memory: cancelled opens leak nothing, KV memory follows the sessions and stays inside its budget."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from edge_helpers import FINGERPRINT, PROMPTS, reference, remote_generate, start_edge
from gelato.transport.channel import EdgeClient, StreamTimeout
from gelato.wire.proto import gelato_pb2 as pb


def _open_up(prompt: list[int]) -> pb.StreamUp:
    return pb.StreamUp(open=pb.OpenRequest(prompt_ids=prompt, tokenizer_fingerprint=FINGERPRINT,
                                           max_new_tokens=8))


def _give_up(client: EdgeClient, prompt: list[int], after_s: float) -> str:
    try:
        client.open_stream().exchange(_open_up(prompt), timeout=after_s)
    except StreamTimeout:
        return "gave up"
    return "opened"


def _held_slots(edge) -> int:
    return edge.call(lambda: edge.server.kv_holders())


def _settle(edge, timeout: float = 10.0) -> dict:
    """Wait until no session and no prefill is left on the edge; its metrics then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = edge.metrics()
        if m["sessions"]["active"] == 0 and m["prefilling"] == 0:
            time.sleep(0.2)  # frees queued on the model thread
            return edge.metrics()
        time.sleep(0.05)
    raise AssertionError(f"the edge did not settle: {edge.metrics()}")


def test_opens_cancelled_while_waiting_for_prefill_hold_no_slot(pair):
    """Streams that give up while their prompt waits for (or is in) prefill release everything: no KV slot is
    held afterwards, however the cancel fell between prefill steps (it used to leak one slot per open)."""
    target, _ = pair
    edge = start_edge(target, prefill_chunk=4, max_sessions=64)
    client = EdgeClient(edge.address)
    try:
        prompt = [i % 90 + 1 for i in range(300)]
        with ThreadPoolExecutor(4) as pool:
            for wave in range(5):  # four devices open long prompts at once and give up after 20-60 ms
                outcomes = list(pool.map(lambda i: _give_up(client, prompt, 0.02 + 0.01 * wave), range(4)))
                assert outcomes == ["gave up"] * 4
        m = _settle(edge)
        assert m["sessions"]["active"] == 0
        assert _held_slots(edge) == 0
        assert m["sessions"]["closed"] <= m["sessions"]["opened"]
        # the edge still serves exactly the target's tokens afterwards
        _, draft = pair
        result, _ = remote_generate(edge.address, draft, PROMPTS[0], 12)
        assert result.token_ids == reference(target, PROMPTS[0], 12)
    finally:
        client.close()
        edge.stop()
