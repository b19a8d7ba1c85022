"""browser-use's side of bench/bench_observation.py; runs in the isolated venv bench/.venv-bench.

Reads one JSON request on stdin: {"urls": [...], "chromium": path, "args": [...], "viewport": [w, h],
"ground_truth_js": "() => ..."}. Launches that Chromium through browser-use's own BrowserSession and,
for each URL, prints one JSON line:

  {"url", "chars", "text", "interactive_count", "dom_chars", "exposed_gt", "gt", "error"}

`text` is exactly what a browser-use Agent puts in its prompt for the page: the <browser_state> block
built by AgentMessagePrompt._get_browser_state_description (page stats, tabs, page info and the
element list from SerializedDOMState.llm_representation(), i.e. DOMTreeSerializer.serialize_tree).
`dom_chars` is the length of the element list alone. `interactive_count` counts the [index] markers in
the text; `exposed_gt` lists the ground-truth ids (data-bench-gt) of the elements those indexes point at
(or of their closest tagged ancestor within 4 levels).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
from typing import Any

# Before browser_use is imported: no telemetry, no cloud sync, no logging setup of its own.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "false")
os.environ.setdefault("BROWSER_USE_CLOUD_SYNC", "false")
os.environ.setdefault("BROWSER_USE_SETUP_LOGGING", "false")
os.environ.setdefault("BROWSER_USE_LOGGING_LEVEL", "error")

from browser_use import BrowserProfile, BrowserSession  # noqa: E402
from browser_use.agent.prompts import AgentMessagePrompt  # noqa: E402

INDEX_RE = re.compile(r"\[(\d+)\]<")


async def _evaluate(session: BrowserSession, expression: str) -> Any:
    cdp = await session.get_or_create_cdp_session(focus=False)
    result = await cdp.cdp_client.send.Runtime.evaluate(
        params={"expression": expression, "returnByValue": True, "awaitPromise": True},
        session_id=cdp.session_id,
    )
    if "exceptionDetails" in result:
        raise RuntimeError(str(result["exceptionDetails"]))
    return result["result"].get("value")


def _ground_truth_id(node: Any, depth: int = 4) -> int | None:
    """The data-bench-gt of the node or of a close ancestor (an index on a <code> inside a link clicks the link)."""
    for _ in range(depth + 1):
        if node is None:
            return None
        gt_id = (node.attributes or {}).get("data-bench-gt")
        if gt_id is not None:
            return int(gt_id)
        node = node.parent_node
    return None


async def _observe(session: BrowserSession, url: str, ground_truth_js: str) -> dict[str, Any]:
    await session.navigate_to(url)
    for _ in range(50):
        if await _evaluate(session, "document.readyState") == "complete":
            break
        await asyncio.sleep(0.1)
    gt = await _evaluate(session, f"({ground_truth_js})()")
    state = await session.get_browser_state_summary(include_screenshot=False)
    text = AgentMessagePrompt(browser_state_summary=state, file_system=None)._get_browser_state_description()  # type: ignore[arg-type]
    dom_text = state.dom_state.llm_representation()
    shown = {int(i) for i in INDEX_RE.findall(text)}
    exposed = set()
    for index, node in state.dom_state.selector_map.items():
        if index in shown and (gt_id := _ground_truth_id(node)) is not None:
            exposed.add(gt_id)
    return {
        "url": url,
        "chars": len(text),
        "text": text,
        "interactive_count": len(shown),
        "dom_chars": len(dom_text),
        "exposed_gt": sorted(exposed),
        "gt": gt,
        "error": None,
    }


async def main() -> None:
    request = json.load(sys.stdin)
    width, height = request["viewport"]
    with tempfile.TemporaryDirectory(prefix="bench-bu-") as profile_dir:
        profile = BrowserProfile(
            executable_path=request["chromium"],
            headless=True,
            args=request["args"],
            chromium_sandbox=False,
            viewport={"width": width, "height": height},
            window_size={"width": width, "height": height},
            user_data_dir=profile_dir,
            enable_default_extensions=False,
            highlight_elements=False,
            dom_highlight_elements=False,
        )
        session = BrowserSession(browser_profile=profile)
        await session.start()
        try:
            for url in request["urls"]:
                try:
                    row = await _observe(session, url, request["ground_truth_js"])
                except Exception as exc:  # one bad page must not lose the others
                    row = {"url": url, "error": f"{type(exc).__name__}: {exc}"}
                print(json.dumps(row), flush=True)
        finally:
            await session.kill()


if __name__ == "__main__":
    asyncio.run(main())
