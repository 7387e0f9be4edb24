"""The client maps every server error back to the same MemmeshError class."""

from __future__ import annotations

import httpx
import pytest

from memmesh import Client, UnavailableError
from memmesh.errors import MemmeshError, all_error_types
from memmesh.interfaces.client import error_from_response


@pytest.mark.parametrize("cls", all_error_types(), ids=lambda c: c.__name__)
def test_every_error_type_round_trips_through_its_body(cls: type[MemmeshError]):
    error = cls("something went wrong", details={"retry_after": 3})
    response = httpx.Response(error.http_status, json=error.to_dict(), request=httpx.Request("GET", "http://x/"))
    back = error_from_response(response)
    assert type(back) is cls
    assert back.message == "something went wrong" and back.details == {"retry_after": 3}


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "InvalidInputError"),
        (401, "AuthError"),
        (404, "NotFoundError"),
        (429, "RateLimitedError"),
        (502, "StorageError"),
        (503, "UnavailableError"),
    ],
)
def test_non_memmesh_bodies_map_by_status(status, name):
    response = httpx.Response(status, text="<html>proxy error</html>", request=httpx.Request("GET", "http://x/"))
    assert type(error_from_response(response)).__name__ == name


def test_unreachable_server_is_unavailable_after_bounded_retries():
    with (
        socket_closed_port() as port,
        Client(f"http://127.0.0.1:{port}", retries=2, max_retry_wait=0.05) as m,
        pytest.raises(UnavailableError, match="cannot reach"),
    ):
        m.stats()


def socket_closed_port():
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield port

    return closed()


@pytest.mark.parametrize("key", ["mm_…", "mm_abc_déf", "not a key", "mm_", "Bearer mm_1_2", "mm_1_2 3", "mm_1_\t2"])
def test_a_malformed_api_key_is_named_not_a_unicode_crash(key: str) -> None:
    """The README's placeholder ``mm_…`` copied literally used to crash in httpx with
    UnicodeEncodeError; both clients now say the key is malformed before any request."""
    from memmesh import AsyncClient
    from memmesh.errors import AuthError

    for cls in (Client, AsyncClient):
        with pytest.raises(AuthError, match="the API key is malformed"):
            cls("http://127.0.0.1:9", api_key=key)


def test_a_well_formed_key_is_accepted_with_surrounding_whitespace() -> None:
    client = Client("http://127.0.0.1:9", api_key=" mm_0123456789ab_secret-part \n")
    assert client._headers["Authorization"] == "Bearer mm_0123456789ab_secret-part"
    client.close()
