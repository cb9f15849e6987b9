"""The docs site: link rewriting, the link checker, the report page, and one real build.

The fast tests pin each piece against hand-written expectations: the rewritten Markdown of
README links, the broken links of a planted HTML tree, the staged report. The slow one builds the
real site once (``--strict``, the API reference of layer 1 only: the API pages are most of a full
build's time; ``make docs`` builds them all) and checks it against the repository read
independently: a page per built layer, its README's title in it, layer 1's ``Value`` in its API
page, a README figure byte-identical in the site, the report embedded, zero broken links, nothing
loaded from the network, and the tracked ``docs/`` unchanged.
"""

from __future__ import annotations

import hashlib
import re
from html import unescape
from pathlib import Path

import pytest

from layer0_math.lab import REPO_ROOT, built_layers
from layer8_meta import docs_site
from layer8_meta.docs_site import (
    DocsBuildError,
    Staging,
    build_docs,
    check_links,
    markdown_docstring,
    nav_label,
    rewrite_links,
    scan_links,
    titled_fences,
)

# ----------------------------------------------------------------------------- link rewriting


def staging(tmp_path: Path) -> Staging:
    pages = {
        REPO_ROOT / "README.md": "index.md",
        REPO_ROOT / "layer1_autograd" / "README.md": "layer1/index.md",
        REPO_ROOT / "layer7_research" / "README.md": "layer7/index.md",
    }
    modules = {"layer7_research.grokking.data": "layer7/api.md"}
    return Staging(tmp_path, pages, modules)


def test_readme_links_point_into_the_site(tmp_path):
    stage = staging(tmp_path)
    source = REPO_ROOT / "layer7_research" / "README.md"
    markdown = (
        "See [the page](../docs/layer7/grokking.md#1-the-task) and "
        "[layer 1](../layer1_autograd/README.md).\n"
        "![dpo](figures/dpo_curves.png)\n"
        "The data: [data.py](grokking/data.py); the config: "
        "[`pyproject.toml`](../pyproject.toml).\n"
        "Home: [top](../README.md), [arXiv](https://arxiv.org/abs/2201.02177), "
        "[gone](nothing.md).\n"
        "Code stays: `[a](b.md)`\n"
        "```\n[in](a/fence.md)\n```\n"
    )
    expected = (
        "See [the page](grokking.md#1-the-task) and [layer 1](../layer1/index.md).\n"
        "![dpo](../files/layer7_research/figures/dpo_curves.png)\n"
        "The data: [data.py](api.md#layer7_research.grokking.data); the config: "
        "`pyproject.toml`.\n"
        "Home: [top](../index.md), [arXiv](https://arxiv.org/abs/2201.02177), "
        "[gone](nothing.md).\n"
        "Code stays: `[a](b.md)`\n"
        "```\n[in](a/fence.md)\n```\n"
    )
    assert rewrite_links(stage, markdown, source, "layer7/index.md") == expected
    figure = REPO_ROOT / "layer7_research" / "figures" / "dpo_curves.png"
    assert stage.copies == {"files/layer7_research/figures/dpo_curves.png": figure}


def test_a_source_link_with_its_own_words_keeps_them_beside_the_path(tmp_path):
    stage = staging(tmp_path)
    source = REPO_ROOT / "README.md"
    out = rewrite_links(stage, "[the pins](constraints.txt)\n", source, "index.md")
    assert out == "the pins (`constraints.txt`)\n"


def test_docstrings_become_markdown_that_reads_as_written():
    text = (
        "The cell :class:`Value` and :func:`~layer1_autograd.fit`:\n"
        "    h = tanh(W x + b)\n"
        "    [i, f] = [sigma, sigma](W x)\n"
        "\n"
        "- a list item\n"
        "    continued\n"
        "Back to text: weight_ih (G*H, D), *emphasis*, `a*b`."
    )
    expected = (
        "The cell ``Value`` and ``layer1_autograd.fit``:\n"
        "\n"
        "    h = tanh(W x + b)\n"
        "    [i, f] = [sigma, sigma](W x)\n"
        "\n"
        "- a list item\n"
        "    continued\n"
        "Back to text: weight_ih (G\\*H, D), *emphasis*, `a*b`."
    )
    assert markdown_docstring(text) == expected


def test_a_fence_naming_its_file_gets_a_title():
    text = "```python layer7_research/grokking/data.py\nx = 1\n```\n```python\ny\n```\n"
    assert titled_fences(text) == (
        '```python title="layer7_research/grokking/data.py"\nx = 1\n```\n```python\ny\n```\n'
    )


@pytest.mark.parametrize(
    "title, label",
    [
        (
            "Layer 0: the mathematics under deep learning",
            "Layer 0: the mathematics under deep learning",
        ),
        ("Layer 4 — architectures: the sequence, generative", "Layer 4: architectures"),
        ("Layer 7: research — frontier techniques", "Layer 7: research"),
        ("Layer 5 — training: optimisers, stability", "Layer 5: training"),
        ("dlstack", "dlstack"),
    ],
)
def test_nav_labels_keep_the_layer_and_its_first_phrase(title, label):
    assert nav_label(title) == label


# ----------------------------------------------------------------------------- the link checker


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_check_links_catches_a_planted_dangling_link(tmp_path):
    site = tmp_path / "site"
    write(site / "index.html", '<a href="a/page.html#there">ok</a> <a href="a/">dir</a>'
          '<img src="/img/x.png"> <a href="https://example.org/">ext</a>'
          '<a href="#top" id="top">self</a> <a href="mailto:x@y">m</a>')  # fmt: skip
    write(site / "a" / "page.html", '<h2 id="there">t</h2> <a href="../index.html">up</a>'
          '<a href="../missing.html">bad</a> <a href="../index.html#nowhere">bad anchor</a>'
          '<script src="https://cdn.example.org/x.js"></script>'
          '<a href="../../out.html">o</a>')  # fmt: skip
    write(site / "a" / "index.html", "<p>dir index</p>")
    write(site / "img" / "x.png", "png")
    broken, external = scan_links(site)
    assert broken == [
        "a/page.html: ../missing.html (no such file)",
        "a/page.html: ../index.html#nowhere (no id 'nowhere' in index.html)",
        "a/page.html: https://cdn.example.org/x.js (loads from the network: offline)",
        "a/page.html: ../../out.html (points outside the site)",
    ]
    assert external == ["https://cdn.example.org/x.js", "https://example.org/"]
    assert check_links(site) == broken
    (site / "a" / "page.html").write_text('<h2 id="there">t</h2> <a href="../index.html">up</a>')
    assert check_links(site) == []


# ----------------------------------------------------------------------------- the report


RUN = "layer1_autograd/gradcheck/20260101-000000-000000"


def fake_report(runs: Path) -> None:
    """A report as ``python -m layer8_meta report`` leaves it: a page that shows a plot copied
    into its ``assets/`` and links the run folder it came from (which does not travel), and a
    Markdown twin (no page of the site)."""
    write(runs / RUN / "manifest.json", "{}")
    assets = runs / "report" / "assets" / "runs" / "gradcheck"
    write(assets / "plot.png", "P")
    write(assets / "table.md", "| a |\n|---|\n| [x](y) |")
    write(runs / "report" / "report.md", "# Report\n\n[plot](assets/runs/gradcheck/plot.png)\n")
    html = (
        '<h1 id="top">Report</h1><img src="assets/runs/gradcheck/plot.png">'
        f'<a href="../{RUN}">run folder</a> <a href="assets/runs/gradcheck/table.md">table</a>'
        '<a href="#top">top</a>'
    )
    write(runs / "report" / "report.html", html)


def test_the_report_is_copied_with_its_assets_and_its_outward_links_made_file_urls(tmp_path):
    runs, site = tmp_path / "runs", tmp_path / "site"
    fake_report(runs)
    docs_site.copy_report(runs / "report", site)
    html = (site / "report" / "report.html").read_text()
    run_url = (runs / RUN).resolve().as_uri()
    assert html == (
        '<h1 id="top">Report</h1><img src="assets/runs/gradcheck/plot.png">'
        f'<a href="{run_url}">run folder</a> <a href="assets/runs/gradcheck/table.md">table</a>'
        '<a href="#top">top</a>'
    )
    assert (site / "report" / "assets" / "runs" / "gradcheck" / "plot.png").read_text() == "P"
    assert (runs / "report" / "report.html").read_text().count("../layer1_autograd") == 1
    broken, external = scan_links(site)
    assert broken == [] and external == [run_url]


def test_the_report_page_embeds_the_report_or_says_how_to_make_one(tmp_path):
    assert "make report" in docs_site.report_page(tmp_path / "report")
    assert "iframe" not in docs_site.report_page(tmp_path / "report")
    fake_report(tmp_path)
    assert '<iframe src="report/report.html"' in docs_site.report_page(tmp_path / "report")
    docs_site.copy_report(tmp_path / "nothing", tmp_path / "site")
    assert not (tmp_path / "site").exists()


# ----------------------------------------------------------------------------- build guards


def test_a_folder_the_command_did_not_build_is_never_replaced(tmp_path, capsys):
    mine = write(tmp_path / "notes" / "mine.md", "my notes")
    assert docs_site.main(["--out", str(tmp_path / "notes")]) == 2
    out = capsys.readouterr().err
    assert out.startswith("error: --out ") and "notes" in out and out.count("\n") == 1
    assert mine.read_text() == "my notes"


@pytest.mark.slow
def test_strict_mkdocs_names_the_broken_link(tmp_path):
    staged = tmp_path / "docs"
    write(staged / "index.md", "# Home\n\n[away](missing.md)\n")
    with pytest.raises(DocsBuildError, match="missing.md"):
        docs_site.run_mkdocs(staged, tmp_path / "site", [{"Home": "index.md"}], strict=True)


# ----------------------------------------------------------------------------- the real site


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs")
    runs = tmp / "runs"
    fake_report(runs)
    before = tree_digest(REPO_ROOT / "docs")
    result = build_docs(tmp / "site", strict=True, runs_dir=runs, api=["layer1_autograd"])
    return result, before


@pytest.mark.slow
def test_the_real_site_builds_strict_with_no_broken_link(site):
    result, before = site
    assert result.broken_links == []
    assert check_links(result.site_dir) == []
    assert tree_digest(REPO_ROOT / "docs") == before  # the tracked docs never change
    for page in result.site_dir.rglob("*.html"):
        assert not re.search(r'src="(https?:)?//', page.read_text()), page  # offline: no CDN


def first_h1(html: str) -> str:
    """The text of a page's first <h1>, its permalink anchor dropped, entities decoded."""
    inner = re.search(r"<h1[^>]*>(.*?)<a class=\"headerlink\"", html, re.S)[1]
    return unescape(re.sub(r"<[^>]+>", "", inner)).strip()


@pytest.mark.slow
def test_a_page_per_built_layer_with_its_readme_title(site):
    result, _ = site
    assert result.pages >= len(built_layers()) + 2  # each layer, the home page, the report
    for package in built_layers():
        html = (result.site_dir / package.split("_")[0] / "index.html").read_text()
        readme = REPO_ROOT / package / "README.md"
        if readme.exists():
            heading = readme.read_text().splitlines()[0].removeprefix("# ").replace("`", "")
            assert first_h1(html) == heading, package
    home = (result.site_dir / "index.html").read_text()
    assert 'href="layer1/index.html"' in home  # the README table links the layer pages


@pytest.mark.slow
def test_the_api_page_shows_the_public_names(site):
    result, _ = site
    html = (result.site_dir / "layer1" / "api.html").read_text()
    for name in ("Value", "Tensor", "no_grad"):
        assert f'id="layer1_autograd.{name}"' in html, name
    assert 'id="layer1_autograd.value.Value.backward"' in html


@pytest.mark.slow
def test_readme_figures_are_in_the_site(site):
    result, _ = site
    readme = (REPO_ROOT / "layer7_research" / "README.md").read_text()
    figures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", readme)
    assert figures
    html = (result.site_dir / "layer7" / "index.html").read_text()
    for figure in figures:
        copied = result.site_dir / "files" / "layer7_research" / figure
        assert copied.read_bytes() == (REPO_ROOT / "layer7_research" / figure).read_bytes()
        assert f'src="../files/layer7_research/{figure}"' in html


@pytest.mark.slow
def test_the_report_is_embedded(site):
    result, _ = site
    page = (result.site_dir / "report.html").read_text()
    assert '<iframe src="report/report.html"' in page
    assert 'href="report/report.html"' in page
    plot = result.site_dir / "report" / "assets" / "runs" / "gradcheck" / "plot.png"
    assert plot.read_text() == "P"


def test_a_rebuild_replaces_the_previous_site_whole(tmp_path):
    old = write(tmp_path / "site" / "stale.html", "old")
    write(tmp_path / "site" / docs_site.SITE_MARKER, "")
    docs_site.check_out_dir(tmp_path / "site")  # a site built here may be replaced
    new = write(tmp_path / ".site-x" / "site" / "index.html", "new").parent
    docs_site.replace_dir(new, tmp_path / "site")
    assert (tmp_path / "site" / "index.html").read_text() == "new"
    assert not old.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".site-x", "site"]
    assert list((tmp_path / ".site-x").iterdir()) == []  # the old site is gone, not parked


def test_github_lists_become_lists_python_markdown_nests():
    text = (
        "Reading the table:\n- BM25 works\n- **Tests:**\n  - GAE against\n    a sum;\n"
        "  - the clip\n- top\n  cont\n\n```\n  - in a fence\n```\n| a |\n- after a table\n"
    )
    assert docs_site.gfm_lists(text) == (
        "Reading the table:\n\n- BM25 works\n- **Tests:**\n    - GAE against\n      a sum;\n"
        "    - the clip\n- top\n  cont\n\n```\n  - in a fence\n```\n| a |\n- after a table\n"
    )
