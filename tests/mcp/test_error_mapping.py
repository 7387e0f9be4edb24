"""The one MCP error mapper is total: every memmesh error type becomes an isError result with
the CLI's line and the SPEC error body."""

from __future__ import annotations

from memmesh.errors import PendingApprovalError, all_error_types
from memmesh.interfaces.mcp.render import error_result


def test_every_error_type_maps_to_a_tool_error() -> None:
    for kind in all_error_types():
        if kind is PendingApprovalError:
            continue  # not a failure: see the next test
        result = error_result(kind("something went wrong", details={"k": 1}))
        assert result.is_error is True
        assert result.content[0].text == "error: something went wrong"
        assert result.structured_content == {"error": {"code": kind.code, "message": "something went wrong", "details": {"k": 1}}}


def test_a_write_queued_for_approval_is_a_result_that_says_so() -> None:
    result = error_result(PendingApprovalError("write in namespace 'x' awaits approval", details={"pending_id": "p1"}))
    assert result.is_error is False
    assert result.content[0].text == "pending: write in namespace 'x' awaits approval"
    assert result.structured_content is not None
    assert result.structured_content["status"] == "pending" and result.structured_content["pending_id"] == "p1"
