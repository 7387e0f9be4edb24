"""An optional OpenAI-compatible LLM client (see docs/llm.md); nothing in memmesh requires one."""

from memmesh.llm.client import LLMClient, LLMConfig, parse_json_object

__all__ = ["LLMClient", "LLMConfig", "parse_json_object"]
