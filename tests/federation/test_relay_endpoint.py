"""The national hub's ``/relay`` endpoint called directly with zeep, as a province's relay would.

Peers authenticate with ``PeerHeader{instanceId, secret}``; a consignment whose path already
contains the receiving hop (or that has travelled too far) is refused with ``Client.RelayLoop``;
a repeated consignment id is answered ``duplicate=true`` and stores nothing twice.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import zeep
from harness import A_COMMUNE, HA, MINISTRY, NATIONAL, Inbox, Network, sha256
from support.letters import official_letter


def header(edxml: bytes, path: list[str], hop_count: int, consignment_id: str | None = None) -> dict[str, Any]:
    """A document consignment from A's commune to the ministry, as province A would push it."""
    return {
        "consignmentId": consignment_id or str(uuid.uuid4()),
        "kind": "document",
        "originInstance": HA,
        "originDocumentId": str(uuid.uuid4()),
        "senderCode": A_COMMUNE,
        "recipients": {"string": [MINISTRY]},
        "payloadSha256": sha256(edxml),
        "payloadSize": len(edxml),
        "hopCount": hop_count,
        "path": {"string": path},
    }


def fault_of(call: Any, **kwargs: Any) -> str:
    with pytest.raises(zeep.exceptions.Fault) as caught:
        call(**kwargs)
    return str(caught.value.code).rpartition(":")[2]


def test_peers_authenticate_loops_are_refused_and_duplicates_store_nothing(network: Network) -> None:
    national, province = network.national, network[HA]
    edxml = official_letter(A_COMMUNE, [MINISTRY], number="4242")

    impostor = national.relay_client(HA, "not-the-secret")
    assert fault_of(impostor.service.getDirectory, sinceVersion=0) == "Client.AuthenticationFailed"
    assert fault_of(impostor.service.pushConsignment, consignment=header(edxml, [HA], 1), payload=edxml) == (
        "Client.AuthenticationFailed"
    )
    unknown = national.relay_client("HZ", province.upstream_secret)
    assert fault_of(unknown.service.pullConsignments, maxItems=1) == "Client.AuthenticationFailed"

    peer = national.relay_client(HA, province.upstream_secret)
    looped = header(edxml, [HA, NATIONAL], 2)
    assert fault_of(peer.service.pushConsignment, consignment=looped, payload=edxml) == "Client.RelayLoop"
    too_far = header(edxml, [HA], 5)
    assert fault_of(peer.service.pushConsignment, consignment=too_far, payload=edxml) == "Client.RelayLoop"
    assert national.scalar("SELECT count(*) FROM documents") == 0, "a refused consignment stores nothing"

    consignment = header(edxml, [HA], 1)
    first = peer.service.pushConsignment(consignment=consignment, payload=edxml)
    again = peer.service.pushConsignment(consignment=consignment, payload=edxml)
    assert (first.consignmentId, first.duplicate) == (consignment["consignmentId"], False)
    assert (again.consignmentId, again.duplicate) == (consignment["consignmentId"], True)
    assert national.scalar("SELECT count(*) FROM documents") == 1
    assert national.scalar("SELECT count(*) FROM relay_inbound") == 1

    ministry = network.client(MINISTRY)
    (item,) = Inbox(ministry).wait_for(bool, 30, "the pushed document in the ministry's pending list")
    assert ministry.service.getDocument(itemId=item.itemId).edxml == edxml
    assert ministry.service.confirmReceived(itemId=item.itemId) is True
    assert Inbox(ministry).poll() == [], "the duplicate push queued nothing"

    tampered = header(edxml, [HA], 1)
    tampered["payloadSha256"] = sha256(b"something else")
    code = fault_of(peer.service.pushConsignment, consignment=tampered, payload=edxml)
    assert code.startswith("Client."), code
    assert national.scalar("SELECT count(*) FROM documents") == 1, "a payload that does not match is refused"
