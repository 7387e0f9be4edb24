"""One redaction rule for every URL memmesh prints (issue 12, finding 5).

The table pins :func:`memmesh.redact.redact_url`; the CLI tests check that the places that
print a store or source URL (``doctor``, ``migrate``/``restore`` errors, the legacy SQL
importer) never show a password, whichever way the URL carries it.
"""

from __future__ import annotations

import pytest

from memmesh.config import redact_url as config_redact
from memmesh.redact import redact_url
from memmesh.store.postgres import redact_url as store_redact

CASES = [
    ("postgresql://app:s3cret@db.example:5432/mem", "postgresql://app:***@db.example:5432/mem"),
    ("postgresql://app@db.example/mem", "postgresql://app@db.example/mem"),
    ("postgresql://db.example/mem?password=s3cret", "postgresql://db.example/mem?password=***"),
    ("postgresql://db/mem?sslmode=require&PASSWORD=s3cret&x=1", "postgresql://db/mem?sslmode=require&PASSWORD=***&x=1"),
    ("postgresql://app:s3cret@db/mem?sslpassword=s3cret", "postgresql://app:***@db/mem?sslpassword=***"),
    ("postgresql://app:s3@cr/et@db/mem", "postgresql://app:***@db/mem"),
    ("postgresql://app:s3?cret@db/mem", "postgresql://app:***@db/mem"),
    ("postgresql://:s3cret@db/mem", "postgresql://:***@db/mem"),
    ("host=db password=s3cret dbname=mem", "host=db password=*** dbname=mem"),
    ("host=db password='s3 cret' dbname=mem", "host=db password=*** dbname=mem"),
    ("sqlite:////tmp/memmesh.db", "sqlite:////tmp/memmesh.db"),
    ("sqlite:///relative.db", "sqlite:///relative.db"),
]


@pytest.mark.parametrize(("url", "shown"), CASES)
def test_redact_url_hides_every_form_of_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url) and "cret" not in redact_url(url)


def test_there_is_only_one_redaction_function() -> None:
    assert config_redact is redact_url and store_redact is redact_url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:s3cret@127.0.0.1:1/memmesh",
        "postgresql://alice@127.0.0.1:1/memmesh?password=s3cret",
        "postgresql://127.0.0.1:1/memmesh?user=alice&password=s3cret&connect_timeout=1",
    ],
)
def test_doctor_never_prints_a_password(cli, url: str) -> None:
    result = cli("--db", url, "doctor", "--json")
    assert result.code == 1
    assert "s3cret" not in result.out + result.err


def test_unsupported_store_url_errors_hide_the_password(cli) -> None:
    result = cli("migrate", "--from", "mysql://alice:s3cret@db/mem", "--to", "sqlite:///elsewhere.db")
    assert result.code != 0
    assert "s3cret" not in result.out + result.err and "mysql://alice:***@db/mem" in result.err
