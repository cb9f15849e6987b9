"""``docs``: the docs site (mkdocs-material, ``--strict``) from the layers' READMEs, their
docstrings (the API reference), layer 7's annotated pages and the report, links checked.

:func:`layer8_meta.docs_site.build_docs` does the work; this deliverable records it as a run.
The site goes to ``<repo>/site/`` (git-ignored; ``make docs`` builds the same), so open
``site/index.html``. Artifacts: ``broken_links.txt`` when a link does not resolve (the run fails).
"""

from __future__ import annotations

from typing import Any

from layer0_math.lab import REPO_ROOT, RunContext, deliverable
from layer8_meta.deliverables.common import runs_dir_of
from layer8_meta.docs_site import build_docs


@deliverable(quick={"strict": True}, full={}, headline=["pages", "broken_links", "build_seconds"])
def docs(ctx: RunContext) -> dict[str, Any]:
    """Build the site strictly and check every internal link; fail on a broken one."""
    result = build_docs(REPO_ROOT / "site", strict=ctx.config["strict"], runs_dir=runs_dir_of(ctx))
    if result.broken_links:
        ctx.write_text("broken_links.txt", "\n".join(result.broken_links) + "\n")
        raise RuntimeError(
            f"{len(result.broken_links)} broken link(s) in {result.site_dir}, first: "
            f"{result.broken_links[0]} (all in {ctx.path('broken_links.txt')})"
        )
    print(f"docs site: {result.site_dir / 'index.html'}")
    return {
        "pages": result.pages,
        "broken_links": 0,
        "external_links": len(result.external_links),
        "build_seconds": round(result.seconds, 1),
        "site": str(result.site_dir),
    }
