"""Signing in with the app's identity provider, through the local stack: `make offline` creates a
Cognito user pool in moto with alice and bob, and takes the ID tokens it signs (RS256, the keys
served by moto) beside the service's own; wscat-like clients and the chat page chat with them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from typing import Any

import jwt
import pytest

from scripts.service_config import ROOT
from tests.support.wsclient import Client, documents


def test_a_cognito_user_signs_in_and_chats_with_a_user_of_the_services_own_token(local_stack: Any) -> None:
    id_token = local_stack.cognito_token("alice")
    claims = jwt.decode(id_token, options={"verify_signature": False})
    assert jwt.get_unverified_header(id_token)["alg"] == "RS256" and claims["token_use"] == "id"

    async def scenario() -> tuple[Any, Any]:
        alice = await Client.connect(local_stack.websocket_url, subprotocols=["serverless-websocket", "bearer." + id_token])
        bob = await Client.connect(local_stack.url_for("bob"))  # the service's own HS256 token
        await alice.send(json.dumps({"action": "sendDirectMessage", "to": "bob", "content": "from cognito", "ref": "d"}))
        await bob.wait_until(lambda: "from cognito" in bob.contents(), timeout=30)
        await alice.wait_until(lambda: documents(alice, "reply"), timeout=30)
        (delivered,) = [m for f in bob.frames for m in (json.loads(f).get("messages") or [])]
        await alice.close()
        await bob.close()
        return delivered, documents(alice, "reply")[0]

    delivered, reply = asyncio.run(scenario())
    assert delivered["sender"] == "alice"  # the pool's cognito:username is the user id
    assert reply["status"] == 200 and reply["body"] == "Direct message delivered to bob."


def test_a_token_of_another_pool_is_refused(local_stack: Any) -> None:
    other = local_stack.cognito()
    pool = other.create_user_pool(PoolName="not-configured")["UserPool"]["Id"]
    client = other.create_user_pool_client(UserPoolId=pool, ClientName="x", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"])
    client_id = client["UserPoolClient"]["ClientId"]
    other.admin_create_user(UserPoolId=pool, Username="alice", MessageAction="SUPPRESS")
    other.admin_set_user_password(UserPoolId=pool, Username="alice", Password="Alice-other-1", Permanent=True)
    foreign = other.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH",
                                  AuthParameters={"USERNAME": "alice", "PASSWORD": "Alice-other-1"})["AuthenticationResult"]["IdToken"]

    async def refused() -> int:
        import websockets

        with pytest.raises(websockets.InvalidStatus) as error:
            await websockets.connect(f"{local_stack.websocket_url}?token={foreign}", open_timeout=30)
        return int(error.value.response.status_code)

    assert asyncio.run(refused()) == 403  # moto signs every pool with one key: the iss tells them apart


def test_make_token_signs_in_with_cognito(running: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OFFLINE_"))}
    env["OFFLINE_WEBSOCKET_PORT"] = str(running.ports.websocket)
    made = subprocess.run(["make", "--no-print-directory", "token", "FOR=bob", "ISSUER=cognito"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)

    assert made.returncode == 0, made.stderr
    claims = jwt.decode(made.stdout.strip(), options={"verify_signature": False})
    assert claims["cognito:username"] == "bob" and claims["iss"].endswith(running.user_pool_id)
    unknown = subprocess.run(["make", "--no-print-directory", "token", "FOR=carol", "ISSUER=cognito"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "the local Cognito user pool has alice and bob, not 'carol'." in unknown.stderr


def test_the_page_chats_with_a_cognito_token(local_stack: Any, pages: Any) -> None:
    page = pages(f"{local_stack.page_url}#url={local_stack.websocket_url}&token={local_stack.cognito_token('bob')}")
    page.wait_connected()
    page.send("signed in with cognito")

    page.wait_until(lambda: "signed in with cognito" in page.contents())
    (row,) = [row for row in page.rows() if row["parts"].get("content") == "signed in with cognito"]
    assert "bob" in row["text"]  # sent as the pool's cognito:username
