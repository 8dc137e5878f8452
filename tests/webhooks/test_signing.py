"""Our signatures verify with the Standard Webhooks reference library (an independent implementation)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from cortex.webhooks.signing import headers, new_secret, sign


def test_signature_verifies_with_the_reference_library() -> None:
    secret = new_secret()
    body = b'{"id":"01abc","status":"completed","result":[1,2]}'
    sent = headers(secret, "msg_01abc_completed", int(time.time()), body)
    assert Webhook(secret).verify(body, sent) == {"id": "01abc", "status": "completed", "result": [1, 2]}


def test_tampering_fails_verification() -> None:
    secret = new_secret()
    body = b'{"status":"completed"}'
    sent = headers(secret, "msg_1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"status":"failed"}', sent)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, sent)


def test_same_signature_as_the_reference_library() -> None:
    # the Standard Webhooks spec's example secret and message; pins the exact bytes that are signed
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    expected = Webhook(secret).sign("msg_p5jXN8AQM9LWM0D4loKWxJek", _at(1614265330), '{"test": 2432232314}')
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') == expected


def _at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def test_secret_shape() -> None:
    assert new_secret().startswith("whsec_") and new_secret() != new_secret()
    with pytest.raises(ValueError, match="whsec_"):
        sign("nope", "m", 1, b"")
