"""``python -m layer8_meta docs``: the docs site, built from what the repository already says.

The idea: nothing is written twice. A layer's page *is* its ``README.md``, its API reference *is*
its docstrings (mkdocstrings reads them with griffe, statically, without importing the code),
layer 7's annotated pages are the hand-written ones in ``docs/``, and the report is the one
``python -m layer8_meta report`` wrote. The command stages all of it in a temporary folder, so
the tracked ``docs/`` never changes on a build::

    staging/                       (a temporary copy of docs/, plus:)
        index.md                   README.md, links rewritten
        layerN/index.md            layerN_*/README.md, links rewritten
        layerN/api.md              ::: layerN_x.module, one block per public module
        report.md                  the report in an iframe, or how to make it
        files/<repo path>          every image or other file a README points at, copied

and after mkdocs, ``site/report/`` gets the report folder (``<runs>/report``: its pages and
``assets/``), as it is but for the links to run folders outside it, which become ``file://``.

A README's relative links are written for GitHub (``layer1_autograd/README.md``,
``figures/x.png``, ``../docs/layer7/grokking.md``); :func:`rewrite_links` maps each to where it
lives in the site: a README to its page, a file under ``docs/`` to its staged copy, a module to
its section of the API reference, another source file to its path as code (a link would leave
the site), any other file (a figure) to a copy under ``files/``. The docstrings are plain text
with reST roles, not Markdown: :class:`PlainDocstrings`, a griffe extension, makes them render
as written (equations stay code blocks, ``G*H`` stays a product).

mkdocs then builds the staged folder with ``mkdocs.yml`` (``--strict``: every warning, griffe's
included, fails the build), and :func:`check_links` parses every built HTML page and resolves
every internal ``href``/``src`` (relative or root-relative, ``#fragment`` checked against the
target's ids) to a file. External links are listed, never fetched. Any broken link: exit 1.
"""

from __future__ import annotations

import ast
import logging
import posixpath
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import griffe

from layer0_math.lab import REPO_ROOT, built_layers, runs_root
from layer8_meta.registry.cli import Parser

CONFIG = REPO_ROOT / "mkdocs.yml"
DOCS = REPO_ROOT / "docs"
# files a README may point at that are code, rendered as their path instead of a link
CODE_SUFFIXES = {".py", ".yaml", ".yml", ".toml", ".cfg", ".txt", ".json", ".sh", ".proto", ""}
# modules the API reference leaves out: orchestration (the deliverables) and entry points
SKIPPED_MODULES = {"deliverables", "__main__"}


@dataclass(frozen=True)
class DocsResult:
    """What one build made: where, how many pages, which links are broken, how long."""

    site_dir: Path
    pages: int
    broken_links: list[str]
    seconds: float
    external_links: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # mkdocs' (only without strict)


class DocsBuildError(RuntimeError):
    """mkdocs refused the build (in strict mode: any warning); the message lists them."""


# ----------------------------------------------------------------------------- the layers


def layer_dir(package: str) -> str:
    """``layer4_architectures`` -> ``layer4``: the folder of a layer's pages in the site."""
    return package.split("_", 1)[0]


def page_title(markdown: str, default: str) -> str:
    """The first ``# heading`` of a page, or ``default``."""
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return default


def public_modules(package: str) -> list[str]:
    """Every module of a layer package the API reference shows, dotted, in file order: the
    package itself, then its modules and subpackages, skipping private ones (``_x``), the
    deliverables and ``__main__``."""
    root = REPO_ROOT / package
    names = [package]
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        inner = parts[1:]
        if not inner or any(p.startswith("_") or p in SKIPPED_MODULES for p in inner):
            continue
        if "__init__.py" not in {p.name for p in path.parent.iterdir()}:
            continue
        names.append(".".join(parts))
    return names


def api_page(package: str, title: str) -> str:
    """The API reference of one layer: one mkdocstrings block per public module."""
    blocks = [
        f"# {title}: API reference\n",
        "Generated from the docstrings (mkdocstrings). Each module lists its public names "
        "(its `__all__` where it has one); the deliverables, which orchestrate, are described "
        "on the layer's page instead.\n",
    ]
    blocks += [f"::: {name}\n" for name in public_modules(package)]
    return "\n".join(blocks)


def package_docstring(package: str) -> str:
    """A layer package's docstring (read, not imported): the page of a layer with no README."""
    tree = ast.parse((REPO_ROOT / package / "__init__.py").read_text())
    return ast.get_docstring(tree) or package


# ----------------------------------------------------------------------------- docstrings

PRODUCT = re.compile(r"(?<=[\w)\]])\*(?=[\w(\[])")
ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):`~?([^`]+)`")


def markdown_docstring(text: str) -> str:
    """dlstack's docstrings are plain text with reST roles; this makes them read right as the
    Markdown mkdocstrings renders: ``:class:`Value``` -> ```Value```; an indented block right
    under a line of text (an equation, a table) gets the blank line that makes Markdown show it
    as code instead of folding it into the paragraph above; and a ``*`` between two words
    (``G*H``) stays a product instead of opening an emphasis."""
    out: list[str] = []
    block: int | None = None  # the indent of the code block being copied
    for line in ROLE.sub(r"``\1``", text).splitlines():
        indent = len(line) - len(line.lstrip())
        if block is not None and line.strip() and indent < block:
            block = None
        above = out[-1] if out else ""
        if block is None and line.strip() and above.strip():
            above_indent = len(above) - len(above.lstrip())
            if indent >= above_indent + 4 and not above.lstrip().startswith(("-", "*", ":")):
                out.append("")
                block = indent
        out.append(line if block is not None or indent >= 4 else escape_products(line))
    return "\n".join(out)


def escape_products(line: str) -> str:
    """``G*H`` -> ``G\\*H`` outside inline code, so Markdown does not read it as emphasis."""
    parts = re.split(r"(`+[^`]*`+)", line)
    return "".join(p if p.startswith("`") else PRODUCT.sub(r"\\*", p) for p in parts)


class PlainDocstrings(griffe.Extension):
    """The griffe extension (named in mkdocs.yml) that applies :func:`markdown_docstring`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)


def nav_label(title: str) -> str:
    """``Layer 4 — architectures: the sequence, ...`` -> ``Layer 4: architectures``."""
    match = re.match(r"(Layer \d+)(?::|\s+—)\s+(.+?)(?:\s+—\s+|[:,]\s+|$)", title)
    return f"{match[1]}: {match[2]}" if match else title


# ----------------------------------------------------------------------------- links


# inline code (matched so that it is kept as it is: then ``bang`` is None) or an inline link or
# image: [text](target "title")
LINK = re.compile(
    r"`[^`\n]*`"
    r"|(?P<bang>!?)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"]*\")?\)"
)
FENCE = re.compile(r"^\s*(```|~~~)")
FENCE_FILE = re.compile(r"^(\s*```[\w+-]+)[ \t]+([\w./-]+)[ \t]*$", flags=re.M)


@dataclass
class Staging:
    """The staged docs folder and what the rewriting decided: README -> page, files to copy."""

    root: Path
    pages: dict[Path, str]  # README (absolute) -> its page (site-relative)
    modules: dict[str, str]  # dotted module -> its API page
    copies: dict[str, Path] = field(default_factory=dict)  # staged path -> source file


def site_target(stage: Staging, target: Path) -> str | None:
    """Where a repository path lives in the site (site-relative), or None: show it as code."""
    if target in stage.pages:
        return stage.pages[target]
    if target.is_relative_to(DOCS):
        return target.relative_to(DOCS).as_posix()
    rel = target.relative_to(REPO_ROOT) if target.is_relative_to(REPO_ROOT) else None
    if rel is not None and rel.suffix == ".py":
        dotted = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        if dotted in stage.modules:
            return f"{stage.modules[dotted]}#{dotted}"
    if rel is None or target.is_dir() or rel.suffix in CODE_SUFFIXES or not target.exists():
        return None
    staged = f"files/{rel.as_posix()}"
    stage.copies[staged] = target
    return staged


def rewrite_link(stage: Staging, source: Path, page: str, m: re.Match[str]) -> str:
    """One link of a README, pointed at the site (see the module docstring)."""
    target = m["target"]
    if m["bang"] is None or urlsplit(target).scheme or target.startswith(("#", "/")):
        return m[0]
    path, _, fragment = target.partition("#")
    resolved = (source.parent / unquote(path)).resolve()
    if not resolved.exists():
        return m[0]  # left dangling on purpose: --strict and check_links name it
    where = site_target(stage, resolved)
    if where is None:
        code = f"`{resolved.relative_to(REPO_ROOT).as_posix()}`"
        text = m["text"]
        return code if text.strip("`") in code else f"{text} ({code})"
    where, _, anchor = where.partition("#")
    url = posixpath.relpath(where, posixpath.dirname(page) or ".") if where else ""
    fragment = fragment or anchor
    return f"{m['bang']}[{m['text']}]({url}{'#' + fragment if fragment else ''}{m['title'] or ''})"


def rewrite_links(stage: Staging, markdown: str, source: Path, page: str) -> str:
    """Every inline link and image outside code, pointed at the site."""
    out, in_fence = [], False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line):
            in_fence = not in_fence
        if in_fence or FENCE.match(line):
            out.append(line)
            continue
        out.append(LINK.sub(lambda m: rewrite_link(stage, source, page, m), line))
    return "".join(out)


LIST_ITEM = re.compile(r"^( *)(?:[-*+]|\d+\.) ")


def gfm_lists(markdown: str) -> str:
    """Lists as GitHub writes them, for Python-Markdown: a list right under a paragraph line
    gets the blank line Python-Markdown needs to see it, and a list nested by two spaces is
    re-indented to four (with its continuation lines), else it would not nest."""
    out: list[str] = []
    in_fence, shift = False, 0
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line) or in_fence:
            in_fence ^= bool(FENCE.match(line))
            out.append(line)
            continue
        item, above = LIST_ITEM.match(line), out[-1] if out else ""
        if not line.strip() or (item and not item[1]):
            shift = 0
        if item and not item[1] and above.strip() and not LIST_ITEM.match(above):
            if not above.startswith((" ", "\t", "|", "#", ">")):
                out.append("\n")
        if item and 0 < len(item[1]) < 4:
            shift = 4 - len(item[1])
        out.append(" " * shift + line if shift and line.startswith(" ") else line)
    return "".join(out)


def titled_fences(markdown: str) -> str:
    """```` ```python layer7_research/grokking/data.py ```` (a fence naming the file it quotes)
    -> ```` ```python title="layer7_research/grokking/data.py" ````, which material renders as
    the block's title."""
    return FENCE_FILE.sub(r'\1 title="\2"', markdown)


# ----------------------------------------------------------------------------- the report

REPORT_MISSING = """# Report

No report has been made yet. `make report` (= `python -m layer8_meta report`) writes one from
the latest run of every deliverable into `runs/report/report.html`; `make docs` then embeds it
here. Run some deliverables first (`make layers`, or `make layer1` for one layer).
"""


REPORT_PAGE = """---
hide:
  - toc
---

# Report

The latest run of every deliverable of every layer, as `python -m layer8_meta report` wrote it
(`make report` remakes it, then `make docs` puts the new one here).
<a href="report/report.html">Open the report on its own page</a>.

<iframe src="report/report.html" title="dlstack report"
        style="width: 100%; height: 80vh; border: 1px solid #ccc;"></iframe>
"""
# a relative href/src of the report's HTML
REPORT_REF = re.compile(r'(?P<attr>\s(?:href|src)=")(?P<ref>[^"#:]+)(?P<fragment>#[^"]*)?"')


def report_page(report_dir: Path) -> str:
    """The site's Report page: the report in an iframe, or how to make one."""
    return REPORT_PAGE if (report_dir / "report.html").is_file() else REPORT_MISSING


def copy_report(report_dir: Path, site: Path) -> None:
    """Copy the report folder (its pages and ``assets/``) to ``site/report/``, after mkdocs
    (its Markdown twin is no page of the site). What the report links without copying (a run
    folder, its checkpoints: outside its folder) becomes a ``file://`` link to where it is,
    which is what the report's relative link meant; a link to nothing stays, to be reported."""
    if not (report_dir / "report.html").is_file():
        return
    dest, source = site / "report", report_dir.resolve()
    shutil.copytree(source, dest)
    for page in dest.rglob("*.html"):
        folder = (source / page.relative_to(dest)).parent

        def outward(m: re.Match[str], folder: Path = folder) -> str:
            target = (folder / unquote(m["ref"])).resolve()
            if target.is_relative_to(source) or not target.exists() or m["ref"].startswith("/"):
                return m[0]
            return f'{m["attr"]}{target.as_uri()}{m["fragment"] or ""}"'

        page.write_text(REPORT_REF.sub(outward, page.read_text()))


# ----------------------------------------------------------------------------- staging


def layer_readmes() -> dict[Path, str]:
    """Every README that becomes a page -> its page: the top one is the home page."""
    pages = {REPO_ROOT / "README.md": "index.md"}
    pages |= {REPO_ROOT / p / "README.md": f"{layer_dir(p)}/index.md" for p in built_layers()}
    return pages


def write_page(stage: Staging, page: str, markdown: str) -> None:
    """One generated page into the staged folder."""
    path = stage.root / page
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown)


def readme_page(stage: Staging, readme: Path, page: str) -> str:
    """A README as a page of the site: its lists as Python-Markdown reads them, its links
    pointed into the site."""
    return rewrite_links(stage, gfm_lists(readme.read_text()), readme, page)


def layer_nav(stage: Staging, package: str, api: bool) -> dict[str, list]:
    """A layer's pages (README, API, and its hand-written pages in docs/) and its nav section."""
    folder = layer_dir(package)
    readme = REPO_ROOT / package / "README.md"
    if readme.is_file():
        text = readme_page(stage, readme, f"{folder}/index.md")
    else:
        first, _, rest = package_docstring(package).partition("\n")
        text = f"# {first.rstrip('.')}\n\n{rest.strip()}\n"
    write_page(stage, f"{folder}/index.md", text)
    title = page_title(text, package)
    section: list = [f"{folder}/index.md"]
    for extra in sorted((DOCS / folder).glob("*.md")) if (DOCS / folder).is_dir() else []:
        section.append({page_title(extra.read_text(), extra.stem): f"{folder}/{extra.name}"})
    if api:
        write_page(stage, f"{folder}/api.md", api_page(package, nav_label(title)))
        section.append({"API reference": f"{folder}/api.md"})
    return {nav_label(title): section}


def stage_docs(root: Path, report_dir: Path, api: Collection[str] | None) -> list:
    """Fill ``root`` with docs/ and every generated page; return the nav. ``api``: the layers
    whose API reference is built (None: all)."""
    shutil.copytree(DOCS, root, dirs_exist_ok=True)
    for page in root.rglob("*.md"):
        page.write_text(titled_fences(page.read_text()))
    packages = built_layers()
    api = packages if api is None else [p for p in packages if p in api]
    modules = {m: f"{layer_dir(p)}/api.md" for p in api for m in public_modules(p)}
    stage = Staging(root, layer_readmes(), modules)
    home = REPO_ROOT / "README.md"
    write_page(stage, "index.md", readme_page(stage, home, "index.md"))
    nav: list = [{"Home": "index.md"}]
    nav += [layer_nav(stage, p, p in api) for p in packages]
    write_page(stage, "report.md", report_page(report_dir))
    nav.append({"Report": "report.md"})
    for staged, source in stage.copies.items():
        (root / staged).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, root / staged)
    return nav


# ----------------------------------------------------------------------------- build

SITE_MARKER = ".dlstack-site"  # written into every site this command built


class _Warnings(logging.Handler):
    """Collects what mkdocs and its plugins (griffe included) warn about."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_out_dir(site_dir: Path) -> None:
    """Refuse to replace a folder this command did not build (nothing a learner wrote is ever
    overwritten)."""
    if site_dir.exists() and not site_dir.is_dir():
        raise ValueError(f"--out {site_dir} is a file, not a folder: choose a new folder")
    if site_dir.exists() and any(site_dir.iterdir()) and not (site_dir / SITE_MARKER).exists():
        raise ValueError(
            f"--out {site_dir} exists and is not a docs site built by this command "
            f"(no {SITE_MARKER} in it): choose an empty or new folder"
        )


def run_mkdocs(staged: Path, out: Path, nav: list, strict: bool) -> list[str]:
    """Build the staged folder with mkdocs.yml into ``out`` and return mkdocs' warnings (kept
    from the terminal: the command prints them); in strict mode any warning is a
    DocsBuildError that lists them all."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    logger = logging.getLogger("mkdocs")
    handler, propagate = _Warnings(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        config = load_config(
            str(CONFIG), docs_dir=str(staged), site_dir=str(out), strict=strict, nav=nav
        )
        build(config)
    except MkDocsException as exc:
        raise DocsBuildError("; ".join(handler.messages) or str(exc)) from None
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    return handler.messages


def build_docs(
    site_dir: Path = Path("site"),
    strict: bool = True,
    report: Path | None = None,
    runs_dir: Path | None = None,
    api: Collection[str] | None = None,
) -> DocsResult:
    """Stage, build (strict by default) and link-check the site; the old site is replaced only
    once the new one is complete. ``report``: the report folder (default ``<runs>/report``);
    ``api``: the layer packages whose API reference is built (default: every built layer; the
    tests build one, the API pages being most of the build's time)."""
    t0 = time.perf_counter()
    runs = Path(runs_dir) if runs_dir is not None else runs_root()
    site_dir = Path(site_dir).resolve()
    check_out_dir(site_dir)
    site_dir.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="dlstack-docs-") as tmp,
        tempfile.TemporaryDirectory(prefix=f".{site_dir.name}-", dir=site_dir.parent) as new,
    ):
        staged, out = Path(tmp) / "docs", Path(new) / "site"
        report_dir = Path(report) if report else runs / "report"
        nav = stage_docs(staged, report_dir, api)
        warnings = run_mkdocs(staged, out, nav, strict)
        copy_report(report_dir, out)
        (out / SITE_MARKER).write_text("built by python -m layer8_meta docs\n")
        pages = sum(1 for _ in staged.rglob("*.md"))
        broken, external = scan_links(out)
        replace_dir(out, site_dir)
    seconds = time.perf_counter() - t0
    return DocsResult(site_dir, pages, broken, seconds, external, warnings)


def replace_dir(new: Path, target: Path) -> None:
    """Put ``new`` at ``target`` (renames on one file system: the new site is built beside
    the old one); the previous site is removed only once the new one is in place."""
    old = new.with_name(f"{target.name}.old")
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- link check


class _Refs(HTMLParser):
    """Every ``href``/``src`` and every ``id``/``name`` (the anchors) of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []
        self.sources: set[str] = set()  # the refs that are loaded (src), not followed (href)
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value is None:
                continue
            if key in ("href", "src"):
                self.refs.append(value.strip())
                if key == "src":
                    self.sources.add(value.strip())
            elif key == "id" or (key == "name" and tag == "a"):
                self.ids.add(value)


def resolve_ref(site: Path, page: Path, path: str) -> Path:
    """The file a reference points at: root-relative from the site, else from the page's
    folder; a folder means its index.html."""
    target = (site / path.lstrip("/") if path.startswith("/") else page.parent / path).resolve()
    return target / "index.html" if target.is_dir() else target


def scan_links(site_dir: Path) -> tuple[list[str], list[str]]:
    """(broken internal links as ``page: ref (why)``, external links) of every built page."""
    site = Path(site_dir).resolve()
    parsed: dict[Path, _Refs] = {}

    def parse(page: Path) -> _Refs:
        if page not in parsed:
            parsed[page] = _Refs()
            parsed[page].feed(page.read_text(errors="replace"))
        return parsed[page]

    def rel(page: Path) -> str:
        return page.relative_to(site).as_posix()

    broken, external = [], set()
    for page in sorted(site.rglob("*.html")):
        for ref in parse(page).refs:
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc:
                if parts.scheme in ("http", "https", "file") or parts.netloc:
                    external.add(ref)
                    if ref in parse(page).sources:
                        broken.append(f"{rel(page)}: {ref} (loads from the network: offline)")
                continue
            target = resolve_ref(site, page, unquote(parts.path)) if parts.path else page
            why = link_problem(site, target, parts.fragment, parse)
            if why:
                broken.append(f"{rel(page)}: {ref} ({why})")
    return broken, sorted(external)


def link_problem(site: Path, target: Path, fragment: str, parse) -> str | None:
    """Why a resolved internal link is broken, or None."""
    if not target.is_relative_to(site):
        return "points outside the site"
    if not target.is_file():
        return "no such file"
    if fragment and target.suffix == ".html" and unquote(fragment) not in parse(target).ids:
        return f"no id {fragment!r} in {target.relative_to(site).as_posix()}"
    return None


def check_links(site_dir: Path) -> list[str]:
    """The broken internal links of a built site, as ``page: ref (why)``; empty when all hold."""
    return scan_links(site_dir)[0]


# ----------------------------------------------------------------------------- command


def main(argv: list[str]) -> int:
    p = Parser(
        prog="python -m layer8_meta docs",
        description="Build the docs site (mkdocs-material) and check its links.",
    )
    p.add_argument("--out", type=Path, default=REPO_ROOT / "site", help="site folder (site/)")
    p.add_argument("--runs", type=Path, default=None, help="runs folder (default: runs_root())")
    p.add_argument("--report", type=Path, default=None, help="report folder (<runs>/report)")
    p.add_argument("--no-strict", action="store_true", help="let mkdocs warnings pass")
    a = p.parse_args(argv)
    try:
        result = build_docs(a.out, strict=not a.no_strict, report=a.report, runs_dir=a.runs)
    except (ValueError, DocsBuildError) as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    for line in result.warnings:
        print(f"warning: {line}")
    for line in result.broken_links:
        print(f"broken link: {line}")
    print(
        f"docs: {result.pages} pages in {result.seconds:.1f} s, "
        f"{len(result.broken_links)} broken links, {len(result.external_links)} external "
        f"(not fetched) -> {result.site_dir / 'index.html'}"
    )
    return 1 if result.broken_links else 0
