"""Characters and tokens per page observation: our serializer (agents.observe) against browser-use's.

Run: .venv/bin/python bench/bench_observation.py [--viewport 1024x445] [--show-text]

Pages are real documents nobody here wrote (Debian's python3.11-doc HTML) plus tests/pages/login.html,
served on 127.0.0.1 by a thread of this process. For each page:

- ours: Observation.render() of agents.observe.observe(page), in this venv with Playwright, as the model
  gets it (RENDER_ELEMENTS cap included); "ours-all" is the same render with no element cap, to show
  what full coverage would cost;
- browser-use: the <browser_state> text its Agent puts in the prompt (page stats, tabs, page info and
  DOMTreeSerializer's element list), produced by bench/_browser_use_observe.py in the isolated venv
  bench/.venv-bench, driving the same Chromium binary at the same viewport.

Coverage: before observing, a ground-truth query tags every `a[href], button, input:not([type=hidden]),
select, textarea, [role=button], [role=link]` with data-bench-gt; an element counts as covered when the
text exposes a ref/index that points at it. "vis" is coverage of the rendered (visible) ground truth,
"vp" of the part inside the first viewport.

Tokens: cl100k_base through tiktoken in the bench venv. tiktoken would download the BPE file, which this
machine cannot; bpe-openai's wheel ships the same file, so it is copied into a TIKTOKEN_CACHE_DIR and
tiktoken checks it against its pinned SHA-256 before use. If that fails the table says "chars/4".

The bench venv (browser-use pinned, tiktoken, bpe-openai) is created on first run if missing.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gzip
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.browser import BrowserHost  # noqa: E402
from agents.observe import observe  # noqa: E402

BENCH_DIR = ROOT / "bench"
BENCH_VENV = BENCH_DIR / ".venv-bench"
BENCH_PY = BENCH_VENV / "bin" / "python"
HELPER = BENCH_DIR / "_browser_use_observe.py"
TIKTOKEN_CACHE = BENCH_VENV / "tiktoken-cache"
BROWSER_USE_SPEC = os.environ.get("BENCH_BROWSER_USE_SPEC", "browser-use==0.13.14")
BENCH_PACKAGES = [BROWSER_USE_SPEC, "tiktoken", "bpe-openai"]
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"

CHROMIUM = os.environ.get("ENIGMA_CHROMIUM_PATH", "/usr/lib/chromium/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DOCS = Path("/usr/share/doc/python3.11/html")
TEST_PAGES = ROOT / "tests" / "pages"
TEST_PREFIX = "/_enigma_tests/"
PAGES = [
    "index.html",
    "library/json.html",
    "library/functions.html",
    "tutorial/index.html",
    "search.html",
    TEST_PREFIX + "login.html",
]
DEFAULT_VIEWPORT: tuple[int, int] = inspect.signature(BrowserHost.__init__).parameters["viewport"].default

GROUND_TRUTH_JS = """
() => {
  const sel = 'a[href], button, input:not([type=hidden]), select, textarea, [role=button], [role=link]';
  const vh = window.innerHeight, vw = window.innerWidth;
  const all = [...document.querySelectorAll(sel)];
  const visible = [], viewport = [];
  all.forEach((el, i) => {
    el.setAttribute('data-bench-gt', String(i));
    if (!el.checkVisibility({visibilityProperty: true})) return;
    const r = el.getBoundingClientRect();
    if (r.width <= 0 || r.height <= 0) return;
    visible.push(i);
    if (r.bottom > 0 && r.top < vh && r.right > 0 && r.left < vw) viewport.push(i);
  });
  return {total: all.length, visible, viewport};
}
"""

_OUR_REFS_JS = """
(refAttr) => Object.fromEntries([...document.querySelectorAll('[' + refAttr + '][data-bench-gt]')]
  .map((el) => [el.getAttribute(refAttr), Number(el.getAttribute('data-bench-gt'))]))
"""

_TOKEN_COUNTER = r"""
import json, sys
texts = json.load(sys.stdin)
try:
    import tiktoken
    enc = tiktoken.get_encoding("cl100k_base")
    print(json.dumps({"method": "cl100k_base (tiktoken " + tiktoken.__version__ + ")",
                      "counts": [len(enc.encode(t, disallowed_special=())) for t in texts]}))
except Exception as exc:
    print(json.dumps({"method": "chars/4 (tiktoken unavailable: " + type(exc).__name__ + ")",
                      "counts": [-(-len(t) // 4) for t in texts]}))
"""


# --- bench venv ------------------------------------------------------------------------------------


def _bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TIKTOKEN_CACHE_DIR"] = str(TIKTOKEN_CACHE)
    env.pop("VIRTUAL_ENV", None)
    return env


def _bench_venv_ready() -> bool:
    if not BENCH_PY.exists():
        return False
    probe = subprocess.run(
        [str(BENCH_PY), "-c", "import browser_use, tiktoken, bpe_openai"], capture_output=True, env=_bench_env()
    )
    return probe.returncode == 0


def _seed_tiktoken_cache() -> None:
    """Put cl100k_base where tiktoken looks for its download, from the copy inside bpe-openai's wheel."""
    target = TIKTOKEN_CACHE / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    if target.exists():
        return
    found = subprocess.run(
        [str(BENCH_PY), "-c", "import bpe_openai, pathlib; print(pathlib.Path(bpe_openai.__file__).parent)"],
        capture_output=True,
        text=True,
        env=_bench_env(),
    )
    source = Path(found.stdout.strip()) / "data" / "cl100k_base.tiktoken.gz"
    if found.returncode != 0 or not source.exists():
        return
    data = gzip.decompress(source.read_bytes())
    if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
        return  # not the published file: leave tiktoken unable to load it, the table then says chars/4
    TIKTOKEN_CACHE.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def ensure_bench_venv() -> None:
    if not _bench_venv_ready():
        print(
            f"creating {BENCH_VENV.relative_to(ROOT)} with {' '.join(BENCH_PACKAGES)} (first run only)...",
            file=sys.stderr,
        )
        if BENCH_VENV.exists():
            shutil.rmtree(BENCH_VENV)
        base_python = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base_python, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_PY), "-m", "pip", "install", "-q", *BENCH_PACKAGES], check=True, env=_bench_env())
    _seed_tiktoken_cache()


def count_tokens(texts: list[str]) -> tuple[str, list[int]]:
    result = subprocess.run(
        [str(BENCH_PY), "-c", _TOKEN_COUNTER],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
        env=_bench_env(),
    )
    data = json.loads(result.stdout)
    return data["method"], data["counts"]


def bench_venv_version(package: str) -> str:
    result = subprocess.run(
        [str(BENCH_PY), "-c", f"import importlib.metadata as m; print(m.version('{package}'))"],
        capture_output=True,
        text=True,
        env=_bench_env(),
    )
    return result.stdout.strip() or "?"


# --- pages ---------------------------------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    def translate_path(self, path: str) -> str:
        if path.startswith(TEST_PREFIX):
            return str(TEST_PAGES / Path(path[len(TEST_PREFIX) :].split("?")[0]).name)
        return super().translate_path(path)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


def serve() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(DOCS)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


# --- measurements --------------------------------------------------------------------------------


@dataclass
class Result:
    text: str = ""
    refs: int = 0
    exposed: set[int] = field(default_factory=set)
    error: str | None = None
    tokens: int = 0
    dom_chars: int = 0  # browser-use only: its element list alone, without the <browser_state> wrapping


@dataclass
class PageRow:
    page: str
    gt_total: int = 0
    gt_visible: set[int] = field(default_factory=set)
    gt_viewport: set[int] = field(default_factory=set)
    results: dict[str, Result] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


async def measure_ours(urls: list[str], viewport: tuple[int, int]) -> list[tuple[dict, Result, Result]]:
    out = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = await browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        for url in urls:
            page = await context.new_page()
            await page.goto(url, wait_until="load")
            gt = await page.evaluate(GROUND_TRUTH_JS)
            obs = await observe(page)
            ref_to_gt: dict[str, int] = await page.evaluate(_OUR_REFS_JS, "data-enigma-ref")
            variants = []
            for text in (obs.render(), obs.render(max_elements=10**6)):
                refs = set(re.findall(r"^  \[(e\d+)\] ", text, re.MULTILINE))
                variants.append(
                    Result(text=text, refs=len(refs), exposed={ref_to_gt[r] for r in refs if r in ref_to_gt})
                )
            out.append((gt, variants[0], variants[1]))
            await page.close()
        await browser.close()
    return out


def measure_browser_use(urls: list[str], viewport: tuple[int, int]) -> list[tuple[dict | None, Result]]:
    request = {
        "urls": urls,
        "chromium": CHROMIUM,
        "args": CHROMIUM_ARGS,
        "viewport": list(viewport),
        "ground_truth_js": GROUND_TRUTH_JS.strip(),
    }
    proc = subprocess.run(
        [str(BENCH_PY), str(HELPER)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=600,
        env=_bench_env(),
        cwd=BENCH_DIR,
    )
    rows = {}
    for line in proc.stdout.splitlines():
        if line.startswith('{"url"'):
            row = json.loads(line)
            rows[row["url"]] = row
    out: list[tuple[dict | None, Result]] = []
    for url in urls:
        row = rows.get(url)
        if row is None:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            out.append((None, Result(error=f"helper exited {proc.returncode}: {tail}")))
        elif row.get("error"):
            out.append((None, Result(error=row["error"])))
        else:
            out.append(
                (
                    row["gt"],
                    Result(
                        text=row["text"],
                        refs=row["interactive_count"],
                        exposed=set(row["exposed_gt"]),
                        dom_chars=row["dom_chars"],
                    ),
                )
            )
    return out


# --- report --------------------------------------------------------------------------------------

VARIANTS = ("ours", "ours-all", "browser-use")


def _cov(exposed: set[int], truth: set[int]) -> str:
    return f"{len(exposed & truth)}/{len(truth)}"


def print_table(rows: list[PageRow], method: str, viewport: tuple[int, int], bu_version: str) -> None:
    print(
        f"Observation size per page: viewport {viewport[0]}x{viewport[1]}, tokens = {method}, browser-use {bu_version}"
    )
    print(
        "gt = ground-truth interactive elements (visible / in first viewport); cov vis|vp = of those, how many "
        "the text exposes by ref/index; refs = refs/indexes in the text\n"
    )
    header = (
        f"{'page':<24} {'serializer':<12} {'chars':>7} {'tokens':>7} {'refs':>5} {'cov vis':>9} {'cov vp':>7} "
        f"{'tok/vis-cov':>11}"
    )
    print(header)
    print("-" * len(header))
    totals = {v: [0, 0, 0, 0, 0] for v in VARIANTS}  # chars, tokens, refs, covered vis, covered vp
    gt_vis = gt_vp = 0
    for row in rows:
        gt_vis += len(row.gt_visible)
        gt_vp += len(row.gt_viewport)
        print(
            f"{row.page:<24} gt: {row.gt_total} in DOM, {len(row.gt_visible)} visible, "
            f"{len(row.gt_viewport)} in viewport"
        )
        for name in VARIANTS:
            res = row.results[name]
            if res.error:
                print(f"{'':<24} {name:<12} ERROR {res.error}")
                continue
            vis = len(res.exposed & row.gt_visible)
            vp = len(res.exposed & row.gt_viewport)
            per = f"{res.tokens / vis:.1f}" if vis else "-"
            print(
                f"{'':<24} {name:<12} {len(res.text):>7} {res.tokens:>7} {res.refs:>5} "
                f"{_cov(res.exposed, row.gt_visible):>9} {_cov(res.exposed, row.gt_viewport):>7} {per:>11}"
            )
            for i, value in enumerate((len(res.text), res.tokens, res.refs, vis, vp)):
                totals[name][i] += value
        for note in row.notes:
            print(f"{'':<24} note: {note}")
    print("-" * len(header))
    for name in VARIANTS:
        chars, tokens, refs, vis, vp = totals[name]
        per = f"{tokens / vis:.1f}" if vis else "-"
        print(
            f"{'TOTAL':<24} {name:<12} {chars:>7} {tokens:>7} {refs:>5} {f'{vis}/{gt_vis}':>9} "
            f"{f'{vp}/{gt_vp}':>7} {per:>11}"
        )
    ours, bu = totals["ours"], totals["browser-use"]
    list_chars = sum(row.results["browser-use"].dom_chars for row in rows)
    print(
        f"\nbrowser-use's element list alone (llm_representation, without page stats/tabs/page info): "
        f"{list_chars} chars in total"
    )
    if bu[1]:
        print(f"ours/browser-use tokens: {ours[1] / bu[1]:.2f}x (ours-all: {totals['ours-all'][1] / bu[1]:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--viewport",
        default=f"{DEFAULT_VIEWPORT[0]}x{DEFAULT_VIEWPORT[1]}",
        help="WxH, both browsers (default: BrowserHost's, %(default)s)",
    )
    parser.add_argument("--show-text", action="store_true", help="print every observation text too")
    args = parser.parse_args()
    width, height = (int(n) for n in args.viewport.lower().split("x"))
    viewport = (width, height)
    if not DOCS.is_dir():
        sys.exit(f"{DOCS} is missing: apt-get install python3.11-doc")
    ensure_bench_venv()
    server, base = serve()
    try:
        urls = [base + page.lstrip("/") for page in PAGES]
        ours = asyncio.run(measure_ours(urls, viewport))
        theirs = measure_browser_use(urls, viewport)
    finally:
        server.shutdown()
    rows = []
    for page, (gt, mine, mine_all), (bu_gt, bu) in zip(PAGES, ours, theirs, strict=True):
        row = PageRow(
            page=page.removeprefix(TEST_PREFIX),
            gt_total=gt["total"],
            gt_visible=set(gt["visible"]),
            gt_viewport=set(gt["viewport"]),
            results={"ours": mine, "ours-all": mine_all, "browser-use": bu},
        )
        if bu_gt is not None and (bu_gt["visible"], bu_gt["viewport"]) != (gt["visible"], gt["viewport"]):
            row.notes.append(
                f"ground truth in browser-use's browser differs: {len(bu_gt['visible'])} visible, "
                f"{len(bu_gt['viewport'])} in viewport"
            )
        rows.append(row)
    texts = [row.results[name].text for row in rows for name in VARIANTS]
    method, counts = count_tokens(texts)
    for (row, name), n in zip(((row, name) for row in rows for name in VARIANTS), counts, strict=True):
        row.results[name].tokens = n
    if args.show_text:
        for row in rows:
            for name in VARIANTS:
                print(f"===== {row.page} / {name} =====\n{row.results[name].text or row.results[name].error}\n")
    print_table(rows, method, viewport, bench_venv_version("browser-use"))


if __name__ == "__main__":
    main()
