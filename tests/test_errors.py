import pytest

from magsync.errors import (
    DeadLetter,
    RetryLater,
    SessionExpired,
    Throttled,
    classify_magento,
    classify_salesforce,
    salesforce_errors,
)


def sf(code, message="m", fields=None):
    return [{"message": message, "errorCode": code, "fields": fields or []}]


@pytest.mark.parametrize(
    ("status", "body", "outcome", "reason"),
    [
        (401, sf("INVALID_SESSION_ID"), SessionExpired, "INVALID_SESSION_ID"),
        (403, sf("REQUEST_LIMIT_EXCEEDED"), Throttled, "throttled"),
        (429, "Too Many Requests", Throttled, "throttled"),
        (500, sf("UNKNOWN_EXCEPTION"), RetryLater, "UNKNOWN_EXCEPTION"),
        (502, "<html>Bad Gateway</html>", RetryLater, "http_502"),
        (503, "<html><body>Service Unavailable</body></html>", RetryLater, "http_503"),
        (504, "", RetryLater, "http_504"),
        (400, sf("UNABLE_TO_LOCK_ROW"), RetryLater, "UNABLE_TO_LOCK_ROW"),
        (
            400,
            sf("REQUIRED_FIELD_MISSING", fields=["StageName"]),
            DeadLetter,
            "REQUIRED_FIELD_MISSING",
        ),
        (400, sf("INVALID_FIELD"), DeadLetter, "INVALID_FIELD"),
        (400, sf("STRING_TOO_LONG"), DeadLetter, "STRING_TOO_LONG"),
        (
            400,
            sf("FIELD_CUSTOM_VALIDATION_EXCEPTION"),
            DeadLetter,
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        ),
        (400, sf("DUPLICATE_VALUE"), DeadLetter, "DUPLICATE_VALUE"),
        (400, sf("JSON_PARSER_ERROR"), DeadLetter, "JSON_PARSER_ERROR"),
        (
            300,
            ["/services/data/v58.0/sobjects/Opportunity/006A", "/x/006B"],
            DeadLetter,
            "MULTIPLE_RECORDS_MATCH",
        ),
        (404, sf("NOT_FOUND"), DeadLetter, "NOT_FOUND"),
        (403, sf("INSUFFICIENT_ACCESS_OR_READONLY"), DeadLetter, "INSUFFICIENT_ACCESS_OR_READONLY"),
    ],
)
def test_salesforce_outcomes(status, body, outcome, reason):
    error = classify_salesforce(status, body)
    assert type(error) is outcome
    assert error.reason == reason
    assert error.status == status


def test_retry_after_is_honoured_when_given():
    error = classify_salesforce(429, "", {"Retry-After": "17"})
    assert error.retry_after == 17.0
    assert classify_salesforce(503, "", {"Retry-After": "soon"}).retry_after is None


def test_error_list_is_kept_for_the_dead_letter():
    error = classify_salesforce(400, sf("REQUIRED_FIELD_MISSING", "Required fields", ["Name"]))
    assert error.errors == [
        {"errorCode": "REQUIRED_FIELD_MISSING", "message": "Required fields", "fields": ["Name"]}
    ]
    assert error.describe()["errors"] == error.errors


def test_collection_results_use_status_code():
    assert salesforce_errors([{"statusCode": "STRING_TOO_LONG", "message": "x", "fields": ["N"]}])[
        0
    ]["errorCode"] == ("STRING_TOO_LONG")


@pytest.mark.parametrize(
    ("status", "outcome", "reason"),
    [
        (404, DeadLetter, "magento_order_not_found"),
        (401, RetryLater, "magento_unauthorized"),
        (403, RetryLater, "magento_unauthorized"),
        (429, RetryLater, "magento_429"),
        (500, RetryLater, "magento_500"),
        (503, RetryLater, "magento_503"),
        (400, DeadLetter, "magento_400"),
    ],
)
def test_magento_outcomes(status, outcome, reason):
    error = classify_magento(status, {"message": "x"})
    assert type(error) is outcome
    assert error.reason == reason


def test_an_html_outage_page_is_summarised_as_words():
    page = (
        "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head><body>"
        "<h1>Service Unavailable</h1><p>Down for maintenance.</p></body></html>"
    )
    error = classify_salesforce(503, page)
    assert str(error) == (
        "Salesforce 503: Service Unavailable Service Unavailable Down for maintenance."
    )
    assert error.errors == [
        {
            "errorCode": None,
            "message": "Service Unavailable Service Unavailable Down for maintenance.",
        }
    ]
    assert str(classify_salesforce(504, "")) == "Salesforce 504"
