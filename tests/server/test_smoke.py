from __future__ import annotations

from .conftest import Server, make_report


def test_end_to_end(server: Server) -> None:
    assert server.client.get("/healthz").json()["status"] == "ok"
    [dev] = server.register(1)
    rel, env = server.release(2)
    c = server.campaign(rel)
    r = server.checkin(dev, sequence_number=1)
    assert r.status_code == 200, r.text
    offer = r.json()
    assert offer["sequence_number"] == 2
    d = server.client.get(offer["envelope"]["url"], headers=dev.headers)
    assert d.status_code == 200
    assert d.content == env.encode()
    nonce = bytes.fromhex(offer["report_nonce"])
    rep = server.report(dev, make_report(env, dev.key, nonce=nonce))
    assert rep.status_code == 201, rep.text
    st = server.status(c["id"])
    assert st["counts"]["installed"] == 1
    assert st["state"] == "completed"
