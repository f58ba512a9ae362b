"""Bad requests get Salesforce-shaped errors, never a traceback or a bare 500 of the server's own,
and clients that misbehave or vanish do not disturb the org."""

import socket
import ssl

import pytest

from magsync.sandbox.salesforce import api

POST_ACCOUNT = b"POST /services/data/v58.0/sobjects/Account HTTP/1.1\r\nHost: x\r\n"
JSON_BODY_REQUIRED = [
    {
        "message": "The HTTP entity body is required, but this request has no entity body.",
        "errorCode": "JSON_PARSER_ERROR",
    }
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "expected"),
    [
        (
            b"{Name: 'Acme'}",
            "application/json",
            400,
            [
                {
                    "message": "Unexpected character ('N' (code 78)): expected a valid value "
                    "(JSON String, Number, Array, Object or token 'null', 'true' or 'false') "
                    "at [line:1, column:2]",
                    "errorCode": "JSON_PARSER_ERROR",
                }
            ],
        ),
        (b'{"Name": "Acme"', "application/json", 400, None),
        (b"", "application/json", 400, JSON_BODY_REQUIRED),
        (b'{"Name": NaN}', "application/json", 400, None),
        (b'{"Name": "\xff\xfe"}', "application/json; charset=UTF-8", 400, None),
        (b'[{"Name": "Acme"}]', "application/json", 400, None),
        (b'"Acme"', "application/json", 400, None),
        (
            b"Name=Acme",
            "application/x-www-form-urlencoded",
            415,
            [
                {
                    "message": "Content type 'application/x-www-form-urlencoded' not supported",
                    "errorCode": "UNSUPPORTED_MEDIA_TYPE",
                }
            ],
        ),
        (b"<Account><Name>Acme</Name></Account>", "text/xml", 415, None),
        (b'{"Name": "Acme"}', None, 415, None),
    ],
    ids=[
        "not json",
        "truncated",
        "empty",
        "NaN",
        "not utf-8",
        "array",
        "string",
        "form",
        "xml",
        "no type",
    ],
)
def test_bad_bodies(org, data, body, content_type, status, expected):
    headers = {"Content-Type": content_type} if content_type else {}
    response = data("POST", "sobjects/Account", data=body, headers=headers)
    assert response.status_code == status
    errors = response.json()
    assert isinstance(errors, list)
    assert set(errors[0]) == {"message", "errorCode"}
    assert errors[0]["errorCode"] == (
        "JSON_PARSER_ERROR" if status == 400 else "UNSUPPORTED_MEDIA_TYPE"
    )
    if expected:
        assert errors == expected
    assert response.headers["Sforce-Limit-Info"].startswith("api-usage=")
    assert org.records("Account") == []


def test_huge_body_is_refused_and_the_connection_stays_usable(org, data):
    response = data(
        "POST",
        "sobjects/Account",
        data=b"x" * (api.MAX_BODY + 1),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json() == [
        {
            "message": f"The request body exceeds the maximum size of {api.MAX_BODY} bytes",
            "errorCode": "REQUEST_ENTITY_TOO_LARGE",
        }
    ]
    assert response.headers["Sforce-Limit-Info"] == "api-usage=0/5000000"
    assert data("POST", "sobjects/Account", json={"Name": "Acme"}).status_code == 201


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/favicon.ico",
        "/services/apexrest/orders",
        "/services/data/v58.0/sobjects/Account/001A0000006Vm9rIAC/x/y",
        "/services/Soap/u/58.0",
    ],
)
def test_unknown_paths(org, session, token, path):
    response = session.get(
        f"{org.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 404
    assert response.json() == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]


def test_uri_too_long(org, session, token):
    response = session.get(
        f"{org.url}/services/data/v58.0/query",
        params={"q": "x" * 17000},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 414
    assert response.json()[0]["errorCode"] == "URI_TOO_LONG"


def test_head_answers_without_a_body(org, session, token):
    response = session.head(
        f"{org.url}/services/data/v58.0/limits",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) > 0
    assert response.content == b""


def test_chunked_body(org, data):
    response = data(
        "POST",
        "sobjects/Account",
        data=iter([b'{"Name":', b' "Acme"}']),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201


def tls_socket(org):
    context = ssl.create_default_context(cafile=str(org.ca_path))
    raw = socket.create_connection(("127.0.0.1", org.port), timeout=5)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def read_all(sock):
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionError, ssl.SSLError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400, "BAD_REQUEST"),
        (b"GET /services/data/ HTTP/9.9\r\n\r\n", 505, "BAD_REQUEST"),
        (b"BREW /services/data/ HTTP/1.1\r\nHost: x\r\n\r\n", 405, "METHOD_NOT_ALLOWED"),
        (
            POST_ACCOUNT + b"Content-Length: lots\r\n\r\n",
            400,
            "BAD_REQUEST",
        ),
        (
            POST_ACCOUNT + b"Content-Length: 999999999\r\n\r\n",
            413,
            "REQUEST_ENTITY_TOO_LARGE",
        ),
    ],
    ids=["garbage", "http 9.9", "unknown method", "bad length", "too long to read"],
)
def test_malformed_http(org, request_bytes, status, code):
    with tls_socket(org) as sock:
        sock.sendall(request_bytes)
        answer = read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Content-Type: application/json" in head
    assert f'"errorCode":"{code}"'.encode() in body


def test_misbehaving_clients_leave_no_traces(org, data, capfd):
    # A client that speaks plain HTTP to the TLS port.
    with socket.create_connection(("127.0.0.1", org.port), timeout=5) as plain:
        plain.sendall(b"GET /services/data/ HTTP/1.1\r\nHost: x\r\n\r\n")
        read_all(plain)
    # A client that connects and goes away during the handshake.
    socket.create_connection(("127.0.0.1", org.port), timeout=5).close()
    # A client that promises a body and hangs up halfway.
    with tls_socket(org) as sock:
        sock.sendall(POST_ACCOUNT + b'Content-Length: 500\r\n\r\n{"Na')
    # A client that hangs up before reading its answer.
    with tls_socket(org) as sock:
        sock.sendall(b"GET /services/data/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data("GET", "limits").status_code == 200
    org.stop()  # waits for every connection's thread
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_a_failing_handler_answers_unknown_exception(org, data, monkeypatch, caplog):
    def broken(call):
        raise RuntimeError("boom")

    monkeypatch.setitem(dict(api.ROUTES)[("limits",)], "GET", ("limits", broken))
    response = data("GET", "limits")
    assert response.status_code == 500
    (error,) = response.json()
    assert error["errorCode"] == "UNKNOWN_EXCEPTION"
    assert error["message"].startswith("An unexpected error occurred. Please include this ErrorId")
    assert response.headers["Sforce-Limit-Info"] == "api-usage=1/5000000"
    assert "sandbox org failed on a request" in caplog.text
