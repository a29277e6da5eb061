"""Adapters for agent frameworks: every tool call metered as one action, named after the tool.

Each adapter lives in its own module and needs its framework (an extra of this package):

- `flexcredits_sdk.integrations.langchain` (``flexcredits-sdk[langchain]``);
- `flexcredits_sdk.integrations.openai_agents` (``flexcredits-sdk[openai-agents]``);
- `flexcredits_sdk.integrations.pydantic_ai` (``flexcredits-sdk[pydantic-ai]``);
- `flexcredits_sdk.integrations.llama_index` (``flexcredits-sdk[llama-index]``);
- `flexcredits_sdk.integrations.mcp` (``flexcredits-sdk[mcp]``).

`metered_action` also takes a tool object of these frameworks directly. This module imports no
framework.
"""

from ._common import ToolAction, ToolMeter, record_model_usage

__all__ = ["ToolAction", "ToolMeter", "record_model_usage"]
