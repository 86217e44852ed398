"""AMI through panoramisk, against a stand-in for Asterisk 22's manager interface."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from click.testing import CliRunner

from ivr.channels.asterisk.ami import (
    AgentComplete,
    AgentConnect,
    Ami,
    AmiError,
    AmiUrl,
    Hangup,
    OriginateFailed,
    QueueCallerAbandon,
    QueueCallerJoin,
    QueueCallerLeave,
    mask_number,
    mask_text,
)
from ivr.channels.asterisk.ami_cli import ami
from tests.asterisk.ami_peer import AMI_VERSION, AmiPeer, Outcome

SECRET = "s3cret-ami"
CUSTOMER = "+8613800000001"


@pytest.fixture
async def peer() -> AsyncIterator[AmiPeer]:
    running = await AmiPeer(secret=SECRET).start()
    yield running
    await running.stop()


def url(peer: AmiPeer, secret: str = SECRET) -> AmiUrl:
    return AmiUrl.parse(f"ami://ivr:{secret}@127.0.0.1:{peer.port}")


@contextlib.asynccontextmanager
async def client(peer: AmiPeer, **options: float) -> AsyncIterator[Ami]:
    options = {"reconnect_delay": 0.05, "action_timeout": 1.0, **options}
    connected = Ami(url(peer), **options)
    await connected.connect(timeout=2)
    try:
        yield connected
    finally:
        await connected.close()


async def until(condition: object, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


# -- the URL and masking ---------------------------------------------------------------


def test_the_url_is_parsed_and_never_shows_its_secret() -> None:
    parsed = AmiUrl.parse("ami://ivr:top%20secret@10.0.0.5:5039")
    assert (parsed.host, parsed.port, parsed.username, parsed.secret) == (
        "10.0.0.5", 5039, "ivr", "top secret")
    assert AmiUrl.parse("ami://ivr:x@pbx.local").port == 5038
    assert "secret" not in str(parsed) and "secret" not in repr(parsed)
    assert str(parsed) == "ami://ivr:***@10.0.0.5:5039"
    for bad, message in (("http://ivr:pw@h:5038", "must start with ami://"),
                         ("ami://h:5038", "no user"),
                         ("ami://ivr@h:5038", "no secret for user ivr"),
                         ("ami://ivr:pw@h:99999", "port must be a number from 1 to 65535"),
                         ("ami://ivr:pw@h:abc", "port must be a number"),
                         ("ami://ivr:pw@:5038", "no host")):
        with pytest.raises(ValueError, match=message) as info:
            AmiUrl.parse(bad)
        assert "pw" not in str(info.value)


def test_numbers_are_masked() -> None:
    assert mask_number(CUSTOMER) == "+86138****0001"
    assert mask_number("13800000001") == "13800**0001"
    assert mask_number("1001") == "****"
    assert mask_number("<unknown>") == "<unknown>"
    assert mask_text("PJSIP/13800000001@trunk, uniqueid 1795870864.77") == (
        "PJSIP/13800**0001@trunk, uniqueid 1795870864.77")


# -- login -----------------------------------------------------------------------------


async def test_login_is_accepted(peer: AmiPeer) -> None:
    async with client(peer) as connected:
        assert connected.connected and peer.logins == 1
        login = peer.received("Login")[0]
        assert (login["Username"], login["Secret"], login["Events"]) == ("ivr", SECRET, "on")
    await until(lambda: peer.received("Logoff"))  # a polite goodbye


async def test_a_refused_login_names_the_user_not_the_secret(peer: AmiPeer) -> None:
    refused = Ami(url(peer, "wrong-secret"), reconnect_delay=0.05)
    with pytest.raises(AmiError) as info:
        await refused.connect(timeout=2)
    assert str(info.value) == (f"AMI login refused for user ivr at 127.0.0.1:{peer.port}: "
                               "check manager.conf's secret and permit")
    await asyncio.sleep(0.15)
    assert peer.refused == 1  # and it does not keep trying once refused


async def test_nobody_listening_is_an_ami_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AmiError, match=f"cannot reach AMI at 127.0.0.1:{port}"):
        await Ami(f"ami://ivr:{SECRET}@127.0.0.1:{port}").connect(timeout=2)


# -- originate -------------------------------------------------------------------------


async def test_originate_returns_the_answered_channel(peer: AmiPeer) -> None:
    async with client(peer) as connected:
        uniqueid = await connected.originate(CUSTOMER, "collections", caller_id="95558",
                                             variables={"IVR_CUSTOMER": "17", "IVR_LANG": "en"}, timeout=20)
    assert uniqueid == "1795870864.1"
    sent = peer.received("Originate")[0]
    assert {key: sent[key] for key in ("Channel", "Context", "Exten", "Priority", "Async", "Timeout",
                                       "CallerID")} == {
        "Channel": f"PJSIP/{CUSTOMER}@trunk", "Context": "ivr-outbound", "Exten": "s", "Priority": "1",
        "Async": "true", "Timeout": "20000", "CallerID": "95558"}
    assert sent["Variable"] == ["IVR_FLOW=collections", "IVR_CUSTOMER=17", "IVR_LANG=en"]  # a line each
    assert str(sent["ActionID"]).startswith("ivr-originate-")


async def test_originate_failures_say_why(peer: AmiPeer) -> None:
    reasons = {"0": "no such extension", "1": "no answer", "3": "no answer", "5": "busy",
               "8": "congestion"}
    peer.outcomes = {f"1380000010{code}": Outcome("Failure", code) for code in reasons}
    async with client(peer) as connected:
        for code, words in reasons.items():
            with pytest.raises(OriginateFailed, match=words):
                await connected.originate(f"1380000010{code}", "collections", caller_id="95558")
        # the outcome may overtake the "queued" answer
        peer.outcomes["13800000200"] = Outcome("Failure", "0", before_ack=True)
        with pytest.raises(OriginateFailed, match="no such extension"):
            await connected.originate("13800000200", "collections", caller_id="95558")
        peer.outcomes["13800000201"] = Outcome(before_ack=True)
        assert await connected.originate("13800000201", "collections", caller_id="95558")
        # another trunk
        await connected.originate("2001", "collections", caller_id="95558",
                                  channel_template="PJSIP/{number}@lab")
    assert peer.received("Originate")[-1]["Channel"] == "PJSIP/2001@lab"


async def test_malformed_calls_are_refused_before_anything_is_sent(peer: AmiPeer) -> None:
    async with client(peer) as connected:
        for number, flow, variables in (("1380000000;1", "collections", {}),
                                        ("138\r\nAction: Logoff", "collections", {}),
                                        ("", "collections", {}),
                                        ("13800000001", "bad flow", {}),
                                        ("13800000001", "collections\r\nX: y", {}),
                                        ("13800000001", "collections", {"IVR_X": "a,b"}),
                                        ("13800000001", "collections", {"IVR_FLOW": "other"}),
                                        ("13800000001", "collections", {"BAD NAME": "1"})):
            with pytest.raises(ValueError):
                await connected.originate(number, flow, caller_id="95558", variables=variables)
    assert peer.received("Originate") == []


# -- events ----------------------------------------------------------------------------


async def test_events_are_typed_and_masked(peer: AmiPeer) -> None:
    async with client(peer) as connected:
        stream = connected.events("QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon",
                                  "AgentConnect", "AgentComplete", "Hangup")
        only_hangups = connected.events("Hangup")
        chan = ("Channel", "PJSIP/trunk-00000001")
        uid = ("Uniqueid", "1795870864.4")
        caller = ("CallerIDNum", CUSTOMER)
        peer.push(("Event", "QueueCallerJoin"), ("Privilege", "agent,all"), chan, caller, uid,
                  ("ChanVariable", "IVR_CUSTOMER=17"), ("ChanVariable", "IVR_AUTH=pin"),
                  ("ChanVariable", "OTHER=x"), ("Queue", "vip"), ("Position", "2"), ("Count", "2"))
        peer.push(("Event", "Newchannel"), chan)  # not followed
        peer.push(("Event", "QueueCallerLeave"), chan, caller, uid, ("ChanVariable", "IVR_AUTH=pin"),
                  ("Queue", "vip"), ("Position", "1"), ("Count", "0"))
        peer.push(("Event", "AgentConnect"), chan, caller, uid, ("Queue", "vip"),
                  ("MemberName", "Alice"), ("HoldTime", "12"), ("RingTime", "3"))
        peer.push(("Event", "AgentComplete"), chan, caller, uid, ("Queue", "vip"),
                  ("MemberName", "Alice"), ("HoldTime", "12"), ("TalkTime", "95"), ("Reason", "caller"))
        peer.push(("Event", "QueueCallerAbandon"), chan, caller, ("Uniqueid", "1795870864.5"),
                  ("Queue", "vip"), ("Position", "1"), ("OriginalPosition", "3"), ("HoldTime", "40"))
        peer.push(("Event", "Hangup"), chan, caller, uid, ("Cause", "16"), ("Cause-txt", "Normal Clearing"))
        got = [await asyncio.wait_for(anext(stream), 2) for _ in range(6)]
        hangup = await asyncio.wait_for(anext(only_hangups), 2)

    join, leave, agent, complete, abandon, hung = got
    assert join == QueueCallerJoin(channel="PJSIP/trunk-00000001", uniqueid="1795870864.4",
                                   caller="+86138****0001", queue="vip", position=2, count=2,
                                   variables={"IVR_CUSTOMER": "17", "IVR_AUTH": "pin"})
    assert leave == QueueCallerLeave(channel="PJSIP/trunk-00000001", uniqueid="1795870864.4",
                                     caller="+86138****0001", queue="vip", position=1, count=0,
                                     variables={"IVR_AUTH": "pin"})  # one ChanVariable: a str
    assert isinstance(agent, AgentConnect) and (agent.member, agent.hold_time, agent.ring_time) == (
        "Alice", 12, 3)
    assert isinstance(complete, AgentComplete) and (complete.talk_time, complete.reason) == (95, "caller")
    assert isinstance(abandon, QueueCallerAbandon) and (
        abandon.position, abandon.original_position, abandon.hold_time) == (1, 3, 40)
    assert isinstance(hung, Hangup) and (hung.cause, hung.cause_text) == (16, "Normal Clearing")
    assert hangup == hung
    line = join.describe()
    assert line.startswith("QueueCallerJoin channel=PJSIP/trunk-00000001") and "IVR_CUSTOMER=17" in line
    assert all("13800000001" not in event.describe() for event in got)
    with pytest.raises(StopAsyncIteration):  # closing ends the streams
        await anext(stream)
    with pytest.raises(ValueError, match="unknown AMI event Dial"):
        connected.events("Dial")


# -- drops -----------------------------------------------------------------------------


async def test_after_a_drop_it_logs_in_again_and_events_keep_coming(peer: AmiPeer) -> None:
    async with client(peer) as connected:
        stream = connected.events("Hangup")
        peer.drop()
        await until(lambda: not connected.connected)
        await until(lambda: connected.connected)
        assert peer.logins == 2 and connected.logins == 2
        peer.push(("Event", "Hangup"), ("Channel", "PJSIP/x"), ("Cause", "16"))
        assert (await asyncio.wait_for(anext(stream), 2)).channel == "PJSIP/x"
        assert await connected.originate("13800000001", "collections", caller_id="95558")


async def test_an_action_caught_by_a_drop_fails_at_once_and_is_not_sent_again(peer: AmiPeer) -> None:
    peer.outcomes = {"13800000009": Outcome(respond=False)}
    async with client(peer, action_timeout=5) as connected:
        call = asyncio.ensure_future(connected.originate("13800000009", "collections", caller_id="95558",
                                                         timeout=30))
        await until(lambda: peer.received("Originate"))
        started = time.monotonic()
        peer.drop()
        with pytest.raises(AmiError, match="connection was lost while waiting for Originate"):
            await call
        assert time.monotonic() - started < 1
        await until(lambda: connected.connected)
        await asyncio.sleep(0.1)
        assert len(peer.received("Originate")) == 1  # a second call to the customer would be worse


async def test_actions_fail_in_time_when_asterisk_is_silent_or_gone(peer: AmiPeer) -> None:
    async with client(peer, action_timeout=0.3) as connected:
        peer.answering = False
        started = time.monotonic()
        with pytest.raises(AmiError, match=r"no answer to Ping within 0.3 s"):
            await connected.action({"Action": "Ping"})
        assert time.monotonic() - started < 1
        await peer.stop()  # Asterisk is down: reconnection attempts fail
        await until(lambda: not connected.connected)
        with pytest.raises(AmiError, match="reconnecting: Originate not sent"):
            await connected.originate("13800000001", "collections", caller_id="95558", timeout=0.01)


async def test_the_keepalive_reconnects_a_silent_connection(peer: AmiPeer) -> None:
    async with client(peer, keepalive=0.1, action_timeout=0.2) as connected:
        peer.answering = False
        await until(lambda: peer.logins == 2)
        peer.answering = True
        await until(lambda: connected.connected)
        assert connected.logins == 2


async def test_logs_show_neither_the_secret_nor_numbers(peer: AmiPeer,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with client(peer) as connected:
        stream = connected.events("Hangup")
        await connected.originate("13800000001", "collections", caller_id="95558")
        peer.push(("Event", "Hangup"), ("Channel", "PJSIP/13800000001@trunk-1"), ("CallerIDNum", CUSTOMER))
        await asyncio.wait_for(anext(stream), 2)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "calling 13800**0001" in text and "logged in to" in text
    assert SECRET not in text and "13800000001" not in text


# -- the CLI ---------------------------------------------------------------------------


@contextlib.contextmanager
def peer_in_a_thread(**options: object) -> Iterator[AmiPeer]:
    """The peer on its own event loop: the CLI runs asyncio.run() itself."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    peer = asyncio.run_coroutine_threadsafe(AmiPeer(secret=SECRET, **options).start(),  # type: ignore[arg-type]
                                            loop).result(5)
    try:
        yield peer
    finally:
        asyncio.run_coroutine_threadsafe(peer.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_the_cli_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IVR_AMI_URL", raising=False)
    for args in (["originate", "13800000001", "--flow", "collections"], ["events"]):
        result = CliRunner().invoke(ami, args)
        assert result.exit_code == 2 and "set IVR_AMI_URL=ami://user:secret@host:5038" in result.output


def test_the_cli_prints_masked_events(monkeypatch: pytest.MonkeyPatch) -> None:
    vip = [("Event", "QueueCallerJoin"), ("Channel", "PJSIP/trunk-1"), ("Uniqueid", "1.1"),
           ("CallerIDNum", CUSTOMER), ("Queue", "vip"), ("Position", "1"), ("ChanVariable", "IVR_AUTH=pin")]
    events = [vip, [("Event", "QueueCallerJoin"), ("Uniqueid", "1.2"), ("Queue", "sales")],
              [("Event", "Hangup"), ("Uniqueid", "1.2"), ("Cause", "16")],
              [("Event", "Hangup"), ("Channel", "PJSIP/trunk-1"), ("Uniqueid", "1.1"), ("Cause", "16"),
               ("Cause-txt", "Normal Clearing")]]
    with peer_in_a_thread(after_login=events) as peer:
        monkeypatch.setenv("IVR_AMI_URL", f"ami://ivr:{SECRET}@127.0.0.1:{peer.port}")
        result = CliRunner().invoke(ami, ["events", "--queue", "vip", "--count", "2"])
        everything = CliRunner().invoke(ami, ["events", "--count", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "QueueCallerJoin channel=PJSIP/trunk-1 uniqueid=1.1 caller=+86138****0001 queue=vip position=1 "
        "IVR_AUTH=pin",
        "Hangup channel=PJSIP/trunk-1 uniqueid=1.1 cause=16 cause_text=Normal Clearing"]
    assert everything.exit_code == 0 and len(everything.stdout.splitlines()) == 3
    assert SECRET not in result.output + everything.output


def test_the_cli_originates(monkeypatch: pytest.MonkeyPatch) -> None:
    with peer_in_a_thread(outcomes={"13800000002": Outcome("Failure", "5")}) as peer:
        address = f"ami://ivr:{SECRET}@127.0.0.1:{peer.port}"
        monkeypatch.setenv("IVR_AMI_URL", address)
        ok = CliRunner().invoke(ami, ["originate", "13800000001", "--flow", "collections"])
        busy = CliRunner().invoke(ami, ["originate", "13800000002", "--flow", "collections",
                                        "--url", address])
        bad = CliRunner().invoke(ami, ["originate", "1380;0001", "--flow", "collections"])
        refused = CliRunner().invoke(ami, ["originate", "13800000001", "--flow", "collections", "--url",
                                           address.replace(SECRET, "nope")])
        sent = peer.received("Originate")
    assert ok.exit_code == 0 and ok.output == "answered: channel 1795870864.1 runs flow collections\n"
    assert busy.exit_code == 1 and "the call was not answered: busy" in busy.output
    assert bad.exit_code == 2 and "the number must be" in bad.output
    assert refused.exit_code == 1 and "AMI login refused for user ivr" in refused.output
    assert "nope" not in refused.output
    assert [a["Channel"] for a in sent] == ["PJSIP/13800000001@trunk", "PJSIP/13800000002@trunk"]


def test_the_banner_is_asterisk_22s() -> None:
    assert AMI_VERSION == "11.0.0"
