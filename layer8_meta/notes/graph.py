"""The notes as a graph: an edge note -> prerequisite for each resolved ``[[link]]``.

What it answers:

- **dangling** links (to a note that does not exist), **orphans** (no link in or out),
  **missing code** (a ``code:`` entry that does not exist), and **upward** prerequisites (a
  note at layer k that builds on one at a layer above k: the curriculum goes the other way);
- **chain** of a note: the full closure of its prerequisites, ordered by layer, and the layers
  it touches ("which lower layer did I skip?"). A visited set makes a cycle harmless.

Rendered two ways: a PNG (layers as columns, coloured, labelled, with a legend) and a
self-contained HTML page (inline SVG and JavaScript, no network) where clicking a note
highlights its prerequisite chain and shows its text; drag pans, the wheel zooms.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from layer0_math.files import atomic_file, atomic_write_bytes
from layer0_math.lab import pyplot
from layer8_meta.notes.parse import Note, code_problem, key

LAYER_NAMES = {
    0: "math",
    1: "autograd",
    2: "primitives",
    3: "framework",
    4: "architectures",
    5: "training",
    6: "serving",
    7: "research",
    8: "meta",
}
COLOURS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
]


@dataclass(frozen=True)
class Problems:
    dangling: list[tuple[str, str]]  # (note, link target)
    orphans: list[str]
    missing_code: list[tuple[str, str, str]]  # (note, code entry, why)
    upward: list[tuple[str, str]]  # (note, prerequisite at a higher layer)
    cycles: list[list[str]]

    @property
    def failing(self) -> bool:
        """What ``notes check`` fails on (orphans and cycles are reported, not failed)."""
        return bool(self.dangling or self.missing_code or self.upward)


def resolver(notes: dict[str, Note]) -> dict[str, str]:
    """Link key -> note name: by the note's name and by its title."""
    by_key = {key(n.title): name for name, n in notes.items()}
    by_key.update({key(name): name for name in notes})
    return by_key


def build(notes: dict[str, Note]) -> nx.DiGraph:
    """The graph of resolved links (nodes carry the note); dangling links are left out."""
    resolve = resolver(notes)
    g = nx.DiGraph()
    for name, note in notes.items():
        g.add_node(name, note=note)
    for name, note in notes.items():
        for target in note.links:
            if target in resolve and resolve[target] != name:
                g.add_edge(name, resolve[target])
    return g


def problems(notes: dict[str, Note], repo_root: Path) -> Problems:
    """Everything ``notes check`` and ``notes graph`` report, in note order."""
    resolve, g = resolver(notes), build(notes)
    dangling = [(n, t) for n, note in notes.items() for t in note.links if t not in resolve]
    missing = [
        (n, ref, why)
        for n, note in notes.items()
        for ref in note.code
        if (why := code_problem(ref, repo_root)) is not None
    ]
    upward = [(a, b) for a, b in g.edges if notes[b].layer > notes[a].layer]
    orphans = [n for n in notes if g.degree(n) == 0]
    return Problems(dangling, orphans, missing, sorted(upward), list(nx.simple_cycles(g)))


def chain(notes: dict[str, Note], name: str) -> list[Note]:
    """Every prerequisite of ``name``, transitively (not itself), ordered by (layer, name)."""
    g = build(notes)
    start = resolver(notes).get(key(name))
    if start is None:
        raise ValueError(f"unknown note {name!r}; expected one of {sorted(notes)}")
    seen: set[str] = set()
    todo = [start]
    while todo:
        for pre in g.successors(todo.pop()):
            if pre not in seen and pre != start:
                seen.add(pre)
                todo.append(pre)
    return sorted((notes[n] for n in seen), key=lambda n: (n.layer, n.name))


def layout(notes: dict[str, Note]) -> dict[str, tuple[float, float]]:
    """x = layer, y = rank within the layer (notes in name order, centred)."""
    pos: dict[str, tuple[float, float]] = {}
    for layer in sorted({n.layer for n in notes.values()}):
        names = sorted(n for n, note in notes.items() if note.layer == layer)
        for i, n in enumerate(names):
            pos[n] = (float(layer), (len(names) - 1) / 2 - i)
    return pos


def render_png(notes: dict[str, Note], path: Path) -> Path:
    """The graph as a PNG: a column per layer, nodes coloured by layer, a legend."""
    plt = pyplot()
    g, pos = build(notes), layout(notes)
    tallest = max((sum(1 for n in notes.values() if n.layer == k) for k in LAYER_NAMES), default=1)
    fig, ax = plt.subplots(figsize=(2.2 * len(LAYER_NAMES), max(6.0, 0.42 * tallest)))
    colours = [COLOURS[notes[n].layer] for n in g.nodes]
    nx.draw_networkx_edges(g, pos, ax=ax, alpha=0.25, arrowsize=7, edge_color="#555")
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colours, node_size=120)
    labels = {n: notes[n].title for n in g.nodes}
    nx.draw_networkx_labels(g, pos, labels, ax=ax, font_size=6, verticalalignment="bottom")
    for layer, name in LAYER_NAMES.items():
        ax.scatter([], [], color=COLOURS[layer], label=f"layer {layer}: {name}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="layer")
    ax.set_title(f"dlstack notes: {len(notes)} concepts, arrows point to prerequisites")
    ax.set_xlabel("layer")
    ax.set_ylabel("notes in the layer")
    ax.set_xticks(list(LAYER_NAMES), [f"{k} {v}" for k, v in LAYER_NAMES.items()])
    ax.tick_params(bottom=True, labelbottom=True)
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=130)
    plt.close(fig)
    return path


def graph_data(notes: dict[str, Note]) -> dict:
    """What the HTML page draws: nodes with positions, text and colour; edges."""
    g, pos = build(notes), layout(notes)
    nodes = [
        {
            "id": n,
            "title": note.title,
            "layer": note.layer,
            "x": pos[n][0],
            "y": pos[n][1],
            "colour": COLOURS[note.layer],
            "tags": list(note.tags),
            "code": list(note.code),
            "body": note.body.strip(),
        }
        for n, note in notes.items()
    ]
    return {"nodes": nodes, "edges": [list(e) for e in g.edges], "layers": LAYER_NAMES}


def render_html(notes: dict[str, Note], path: Path) -> Path:
    """The interactive page, one file: the data as JSON inside the page's script."""
    data = json.dumps(graph_data(notes)).replace("</", "<\\/")
    page = (
        HTML.replace("__DATA__", data)
        .replace("__TITLE__", html.escape(f"dlstack notes ({len(notes)})"))
        .replace("__SCRIPT__", SCRIPT)
    )
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{margin:0;font:14px system-ui,sans-serif;display:flex;height:100vh}
#g{flex:1;min-width:0;height:100vh;background:#fafafa;cursor:grab}
#side{width:34%;padding:12px;overflow:auto;border-left:1px solid #ccc}
pre{white-space:pre-wrap} text{font-size:9px;pointer-events:none}
circle{stroke:#333;stroke-width:.5;cursor:pointer} line{stroke:#999;stroke-opacity:.35}
.dim{opacity:.15} .on line,line.on{stroke:#d62728;stroke-opacity:.9;stroke-width:1.5}
circle.sel{stroke:#000;stroke-width:3} #legend span{display:inline-block;margin-right:8px}
</style></head><body>
<svg id="g" xmlns="http://www.w3.org/2000/svg"><g id="view"></g></svg>
<div id="side"><h2>__TITLE__</h2><div id="legend"></div>
<p>Click a note: its prerequisite chain lights up and its text shows here. Drag to pan,
wheel to zoom, click the background to clear.</p><div id="info"></div></div>
<script>const DATA = __DATA__;
__SCRIPT__</script></body></html>
"""

SCRIPT = r"""
const NS = "http://www.w3.org/2000/svg", view = document.getElementById("view");
const byId = {}, pre = {};
DATA.nodes.forEach(n => { byId[n.id] = n; pre[n.id] = []; });
DATA.edges.forEach(([a, b]) => pre[a].push(b));
const X = n => 60 + n.x * 170, Y = n => 400 - n.y * 44;
function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  parent.appendChild(e); return e;
}
const lines = DATA.edges.map(([a, b]) => el("line",
  {x1: X(byId[a]), y1: Y(byId[a]), x2: X(byId[b]), y2: Y(byId[b])}, view));
const dots = {};
DATA.nodes.forEach(n => {
  const c = el("circle", {cx: X(n), cy: Y(n), r: 6, fill: n.colour, "data-id": n.id}, view);
  el("title", {}, c).textContent = n.title + " (layer " + n.layer + ")";
  el("text", {x: X(n) + 8, y: Y(n) + 3}, view).textContent = n.title;
  c.addEventListener("click", ev => { ev.stopPropagation(); select(n.id); });
  dots[n.id] = c;
});
function closure(id) {
  const seen = new Set(), todo = [id];
  while (todo.length) for (const p of pre[todo.pop()]) if (!seen.has(p) && p !== id) {
    seen.add(p); todo.push(p); }
  return seen;
}
function select(id) {
  const chain = closure(id), keep = new Set([id, ...chain]);
  for (const k in dots) { dots[k].classList.toggle("dim", !keep.has(k));
    dots[k].classList.toggle("sel", k === id); }
  DATA.edges.forEach(([a, b], i) => {
    const on = keep.has(a) && keep.has(b);
    lines[i].classList.toggle("on", on); lines[i].classList.toggle("dim", !on); });
  const n = byId[id], info = document.getElementById("info");
  const order = [...chain].map(k => byId[k]).sort((p, q) => p.layer - q.layer);
  info.innerHTML = "";
  el0("h3", n.title + " (layer " + n.layer + ")", info);
  el0("p", "tags: " + n.tags.join(", ") + "  |  code: " + n.code.join(", "), info);
  el0("pre", n.body, info);
  el0("h4", "prerequisite chain (" + order.length + "), layers " +
      [...new Set(order.map(o => o.layer))].join(", "), info);
  const ul = el0("ul", "", info);
  order.forEach(o => el0("li", "layer " + o.layer + ": " + o.title, ul));
}
function el0(tag, text, parent) {
  const e = document.createElement(tag); e.textContent = text; parent.appendChild(e); return e;
}
function clear() {
  for (const k in dots) dots[k].classList.remove("dim", "sel");
  lines.forEach(l => l.classList.remove("dim", "on"));
  document.getElementById("info").innerHTML = "";
}
const legend = document.getElementById("legend");
for (const k in DATA.layers) {
  const s = el0("span", "", legend), c = DATA.nodes.find(n => String(n.layer) === k);
  s.innerHTML = "&#9679; "; s.style.color = c ? c.colour : "#999";
  s.appendChild(document.createTextNode(k + " " + DATA.layers[k]));
}
const svg = document.getElementById("g"), box = view.getBBox();
let sc = Math.min(svg.clientWidth / (box.width + 40), svg.clientHeight / (box.height + 40));
let tx = 20 - box.x * sc, ty = 20 - box.y * sc, drag = null;  // the whole graph in view
const apply = () => view.setAttribute("transform", `translate(${tx},${ty}) scale(${sc})`);
svg.addEventListener("mousedown", e => { drag = [e.clientX - tx, e.clientY - ty, e.clientX]; });
svg.addEventListener("mousemove", e => { if (drag) { tx = e.clientX - drag[0];
  ty = e.clientY - drag[1]; apply(); } });
svg.addEventListener("mouseup", e => { if (drag && Math.abs(e.clientX - drag[2]) < 3 &&
  e.target === svg) clear(); drag = null; });
svg.addEventListener("wheel", e => { e.preventDefault();
  const f = e.deltaY < 0 ? 1.15 : 1 / 1.15; tx = e.clientX - (e.clientX - tx) * f;
  ty = e.clientY - (e.clientY - ty) * f; sc *= f; apply(); }, {passive: false});
apply();
"""
