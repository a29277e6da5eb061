"""`metered_action` on a tool object of an agent framework: which adapter meters it.

The core never imports a framework: an object's class (or a base class) names the framework's
package, and only then is that framework's adapter, and so the framework, imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["Wrap", "meter_tool"]

#: Turns a tool's function into its metered function; the second argument is the tool's name.
Wrap = Callable[[Callable[..., Any], str], Callable[..., Any]]

#: A framework's top-level package -> the adapter module (in this package) for its tools.
_ADAPTERS = {
    "agents": "openai_agents",
    "langchain_core": "langchain",
    "llama_index": "llama_index",
    "mcp": "mcp",
    "pydantic_ai": "pydantic_ai",
}


def meter_tool(tool: Any, wrap: Wrap) -> Any | None:
    """Return `tool` with its function(s) metered through `wrap`, as an object of the same type
    with the same name, description and argument schema; ``None`` when no adapter knows it."""
    for cls in type(tool).__mro__:
        adapter = _ADAPTERS.get(cls.__module__.partition(".")[0])
        if adapter is not None:
            module = importlib.import_module(f"{__package__}.{adapter}")
            metered: Any | None = module.meter_tool(tool, wrap)
            return metered
    return None
