"""AMI through panoramisk against a stand-in for Asterisk's manager interface."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner

from ivr.channels.asterisk.ami import Ami, AmiError, AmiEvent, AmiUrl, OriginateFailed
from ivr.channels.asterisk.ami_cli import ami
from tests.asterisk.ami_peer import AmiPeer


@pytest.fixture
async def peer() -> AsyncIterator[AmiPeer]:
    running = AmiPeer()
    await running.start()
    yield running
    await running.stop()


def url(peer: AmiPeer, secret: str = "s3cret-ami") -> AmiUrl:
    return AmiUrl.parse(f"ami://ivr:{secret}@127.0.0.1:{peer.port}")


def test_the_url_never_shows_its_secret() -> None:
    parsed = AmiUrl.parse("ami://ivr:top%20secret@10.0.0.5:5039")
    assert (parsed.host, parsed.port, parsed.username, parsed.secret) == (
        "10.0.0.5", 5039, "ivr", "top secret")
    assert "secret" not in str(parsed) and "secret" not in repr(parsed)
    for bad in ("http://ivr:x@h:5038", "ami://h:5038", "ami://ivr:x@h:99999"):
        with pytest.raises(ValueError):
            AmiUrl.parse(bad)


async def test_login_and_a_refused_login(peer: AmiPeer) -> None:
    client = Ami(url(peer))
    await client.connect()
    assert peer.logins == 1
    await client.close()
    refused = Ami(url(peer, "wrong-secret"))
    with pytest.raises(AmiError, match="login refused for user ivr") as info:
        await refused.connect()
    assert "wrong-secret" not in str(info.value)


async def test_originate_gives_the_real_outcome(peer: AmiPeer) -> None:
    peer.outcomes = {"13800000002": ("Failure", "5"), "13800000003": ("Failure", "3")}
    client = Ami(url(peer))
    await client.connect()
    try:
        assert await client.originate("13800000001", "collections", caller_id="95558") == "1795870864.77"
        sent = peer.actions[-1]
        assert sent["Context"] == "ivr-outbound" and sent["Channel"] == "PJSIP/13800000001@trunk"
        assert sent["Variable"] == "IVR_FLOW=collections"
        with pytest.raises(OriginateFailed, match="busy"):
            await client.originate("13800000002", "collections", caller_id="95558")
        with pytest.raises(OriginateFailed, match="no answer"):
            await client.originate("13800000003", "collections", caller_id="95558")
        before = len(peer.actions)
        for number, flow in (("1380000000;1", "collections"), ("13800000001", "bad flow")):
            with pytest.raises(ValueError):
                await client.originate(number, flow, caller_id="95558")
        assert len(peer.actions) == before  # nothing was sent
    finally:
        await client.close()


async def test_events_are_typed_and_masked(peer: AmiPeer) -> None:
    client = Ami(url(peer))
    await client.connect()
    stream = client.events("QueueCallerJoin", "Hangup")
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.05)
    peer.push(("Event", "QueueCallerJoin"), ("Channel", "PJSIP/trunk-00000001"), ("Queue", "vip"),
              ("Uniqueid", "1795870864.4"), ("CallerIDNum", "+8613800000001"), ("Position", "2"),
              ("ChanVariable", "IVR_CUSTOMER=17"), ("ChanVariable", "IVR_AUTH=pin"))
    event = await asyncio.wait_for(first, 2)
    assert event == AmiEvent("QueueCallerJoin", "PJSIP/trunk-00000001", "1795870864.4", "vip",
                             "+8613*****0001", 2, None, "", "",
                             {"IVR_CUSTOMER": "17", "IVR_AUTH": "pin"})
    assert "13800000001" not in event.describe()
    peer.push(("Event", "AgentConnect"), ("Queue", "vip"))  # not asked for
    peer.push(("Event", "Hangup"), ("Channel", "PJSIP/trunk-00000001"), ("Cause", "16"),
              ("Cause-txt", "Normal Clearing"), ("CallerIDNum", "13800000001"))
    hangup = await asyncio.wait_for(stream.__anext__(), 2)
    assert (hangup.name, hangup.cause, hangup.cause_text) == ("Hangup", "16", "Normal Clearing")
    await stream.aclose()
    await client.close()


async def test_after_a_drop_it_logs_in_again_and_events_keep_coming(peer: AmiPeer) -> None:
    client = Ami(url(peer), reconnect=0.1, action_timeout=0.5)
    await client.connect()
    stream = client.events("Hangup")
    peer.drop()
    for _ in range(100):
        if peer.logins == 2 and client.manager.authenticated:
            break
        await asyncio.sleep(0.05)
    assert peer.logins == 2
    nxt = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.05)
    peer.push(("Event", "Hangup"), ("Channel", "PJSIP/x"), ("Cause", "16"))
    assert (await asyncio.wait_for(nxt, 2)).channel == "PJSIP/x"
    # An action that gets no answer fails in time instead of hanging.
    peer.answer_actions = False
    with pytest.raises(AmiError, match="no answer"):
        await client.action({"Action": "Ping"})
    await stream.aclose()
    await client.close()


def test_the_cli_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IVR_AMI_URL", raising=False)
    result = CliRunner().invoke(ami, ["originate", "13800000001", "--flow", "collections"])
    assert result.exit_code != 0 and "IVR_AMI_URL" in result.output


def test_the_cli_originates(monkeypatch: pytest.MonkeyPatch) -> None:
    async def serve_and_call() -> tuple[int, str]:
        peer = AmiPeer(outcomes={"13800000002": ("Failure", "5")})
        await peer.start()
        monkeypatch.setenv("IVR_AMI_URL", f"ami://ivr:s3cret-ami@127.0.0.1:{peer.port}")
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, lambda: CliRunner().invoke(
            ami, ["originate", "13800000001", "--flow", "collections"]))
        busy = await loop.run_in_executor(None, lambda: CliRunner().invoke(
            ami, ["originate", "13800000002", "--flow", "collections"]))
        await peer.stop()
        assert "answered; channel 1795870864.77" in ok.output, ok.output
        return busy.exit_code, busy.output

    code, output = asyncio.run(serve_and_call())
    assert code == 1 and "busy" in output
