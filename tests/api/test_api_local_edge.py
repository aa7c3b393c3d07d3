"""The in-process edge of ``gelato api`` (no ``--edge``) answers only this process (issue 28, item 4).

It listens on a loopback port any local user can reach; it requires a per-process bearer token that only the
API holds, so a raw gRPC client there gets UNAUTHENTICATED while the API's own requests (behind its keys and
``--max-concurrent``) are verified as before.
"""

from __future__ import annotations

import grpc
import pytest
from api_helpers import MODEL, PROMPT, openai_client, target_only_text

from gelato.api.backend import Backend
from gelato.api.respond import Limits
from gelato.api.server import ApiServerThread
from gelato.api.speculative import Speculation
from gelato.device.edge_client import EdgeClient
from gelato.wire.proto import gelato_pb2 as pb

pytestmark = pytest.mark.slow  # starts the API server


def test_the_in_process_edge_refuses_calls_without_the_api_token(pair):
    draft, target, tok = pair
    backend = Backend(draft, tok, target, model_name=MODEL)
    with ApiServerThread(backend, Speculation("static-4", None, None, "compact"), Limits(api_keys=frozenset({"k"}))
                         ) as srv:
        ids = list(tok(PROMPT)["input_ids"])
        reply = openai_client(srv.url, api_key="k").completions.create(model=MODEL, prompt=PROMPT, max_tokens=8,
                                                                        temperature=0)
        assert reply.choices[0].text == target_only_text(pair, ids, 8)[0]  # the API's own path still verifies
        address = backend.local_edge_address()
        open_up = pb.StreamUp(open=pb.OpenRequest(prompt_ids=ids, tokenizer_fingerprint=backend.fingerprint,
                                                  max_new_tokens=8))
        for token in (None, "not-the-token"):
            client = EdgeClient(address, token=token)
            try:
                with pytest.raises(grpc.RpcError) as info:
                    client.open_stream().exchange(open_up, 10.0)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.RpcError) as info:
                    client.health()
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            finally:
                client.close()
