"""A ticket type's state graph as SVG: laid out once per type, then drawn with live counts once a second.

layout_graph does all the work that depends only on the type (layers, order, coordinates, edge paths and
every node's markup but its numbers); render_svg only fills the numbers, health dots and links in, so a
page that refreshes each second costs microseconds per type.

Layout (a small Sugiyama): a state's column is its longest distance from the initial state along forward
edges (an edge to a state on the depth-first path from the initial one is a back edge, which breaks the
cycles); states the initial one never reaches share a last column. Edges spanning several columns pass
through placeholder slots, so no edge runs through a box; a barycenter sweep down and up orders each
column to cut crossings. Back edges (and any edge that does not go rightwards) leave their box on the
right, run under the whole graph in a lane of their own and enter their target from the left.
"""

import html
import re
from dataclasses import dataclass
from itertools import pairwise

from common.config.models import TicketType

NODE_W, NODE_H = 232, 76  # room for "code name", a big open count and "due · held · waiting · error"
DUMMY_H = 14  # the slot a long edge takes in a column it crosses
GAP_X, GAP_Y = 80, 26
MARGIN_X, MARGIN_Y = 48, 24  # the left margin holds the start mark and back edges' bends into their target
BACK_BEND = 28  # how far a back edge bulges beside a column as it turns down or up
BACK_LANE_GAP, BACK_LANE_STEP = 22, 12  # the first back edge's lane under the boxes, then one per edge
PORT_STEP = 8  # the spread of the edges leaving (or entering) one side of a box
LABEL_FONT_PX, CHAR_W_PX = 13, 7.4  # an estimate of a label character's width, for truncating names
DOT_R = 5
SWEEPS = 2  # barycenter sweeps (each down, then up): plenty for state graphs of a few dozen states

NORMAL, ALTERNATE = "normal", "alternate"
HEALTHY = "healthy"


@dataclass(frozen=True)
class StateCounts:
    """A state's tickets: open (all not closed), due now, held by a bot, waiting for their time, and parked
    (waiting on an error ticket)."""

    open: int = 0
    due: int = 0
    held: int = 0
    waiting: int = 0
    parked: int = 0


NO_TICKETS = StateCounts()


@dataclass(frozen=True)
class NodeBox:
    code: int
    x: float
    y: float
    w: float
    h: float
    column: int


@dataclass(frozen=True)
class EdgePath:
    """One transition as drawn. kind is normal (a state's first next state) or alternate; back is true for an
    edge drawn around the graph (it closes a cycle, or its target is not to the right of its source)."""

    source: int
    target: int
    kind: str
    back: bool
    d: str  # an SVG path

    @property
    def css_class(self) -> str:
        return f"edge {self.kind}" + (" back" if self.back else "")


@dataclass(frozen=True)
class GraphLayout:
    key: tuple  # (metaservice, type)
    nodes: dict  # code -> NodeBox
    edges: tuple  # EdgePath, in the order of the type's transitions
    width: float
    height: float
    _head: str  # the <svg> element up to the nodes: styles, markers and edges
    _node_parts: tuple  # (code, static markup chunks between the slots render_svg fills)


def layout_graph(ticket_type: TicketType) -> GraphLayout:
    codes = sorted(ticket_type.states)
    edges = _edges(ticket_type)
    reached, back = _depth_first(ticket_type.initial, edges, ticket_type.states)
    columns = _columns(codes, edges, reached, back)
    forward = [(s, t, k) for s, t, k in edges if s != t and (s, t) not in back and columns[t] > columns[s]]
    order, chains = _order(codes, columns, forward, reached)
    slots = _place(order)
    nodes = {c: NodeBox(c, x, y, NODE_W, NODE_H, columns[c]) for c, (x, y, _) in slots.items() if isinstance(c, int)}
    nodes_bottom = max((y + h for _, y, h in slots.values()), default=MARGIN_Y)
    width = 2 * MARGIN_X + max(len(order), 1) * (NODE_W + GAP_X) - GAP_X
    paths, lanes, start_y = _route(edges, forward, chains, slots, nodes, nodes_bottom, ticket_type.initial)
    height = nodes_bottom + (BACK_LANE_GAP + BACK_LANE_STEP * (lanes - 1) if lanes else 0) + MARGIN_Y
    return GraphLayout(
        key=ticket_type.key, nodes=nodes, edges=tuple(paths), width=width, height=height,
        _head=_head_markup(ticket_type, width, height, paths),
        _node_parts=tuple((c, _node_markup(ticket_type, nodes[c], start_y)) for c in codes),
    )


def render_svg(layout: GraphLayout, ticket_type: TicketType, counts: dict, health: dict, href) -> str:
    """The graph with each state's counts ({code: StateCounts}, missing: none), the health of its bot
    ({code: "healthy" | "hung" | ... | None}) and a link to its tickets (href(code) -> URL)."""
    if layout.key != ticket_type.key:
        raise ValueError(f"a layout of {'/'.join(layout.key)} cannot draw {'/'.join(ticket_type.key)}")
    out = [layout._head]
    esc = html.escape
    for code, parts in layout._node_parts:
        n = counts.get(code, NO_TICKETS)
        said = health.get(code)
        if said is None:
            dot, said, title = "unknown", "", "health unknown"
        else:
            said = esc(str(said))
            dot, title = ("healthy" if said == HEALTHY else "unhealthy"), "health: " + said
        values = (esc(href(code)), dot, said, title, str(n.open), str(n.due), str(n.held), str(n.waiting),
                  str(n.parked))
        out.append(parts[0])
        for value, part in zip(values, parts[1:], strict=True):
            out.append(value)
            out.append(part)
    out.append("</g></svg>")
    return "".join(out)


# --- layout ---------------------------------------------------------------------------------------------


def _edges(ticket_type) -> list:
    """(source, target, kind) for every transition between states of the type, normal first."""
    states = ticket_type.states
    found = []
    for source in sorted(ticket_type.transitions):
        for i, target in enumerate(ticket_type.transitions[source]):
            if source in states and target in states:
                found.append((source, target, NORMAL if i == 0 else ALTERNATE))
    return found


def _depth_first(initial, edges, states) -> tuple[list, set]:
    """The states reached from the initial one in depth-first order (normal edges first), and the back
    edges: those to a state on the path being walked (self-loops among them)."""
    succ = _successors(edges)
    reached, back, on_path = [], set(), set()
    if initial not in states:  # the config refuses such a type; drawn anyway, every state unreached
        return reached, back
    seen = {initial}
    stack = [(initial, iter(succ.get(initial, ())))]
    reached.append(initial)
    on_path.add(initial)
    while stack:
        node, targets = stack[-1]
        for target in targets:
            if target in on_path:
                back.add((node, target))
            elif target not in seen:
                seen.add(target)
                reached.append(target)
                on_path.add(target)
                stack.append((target, iter(succ.get(target, ()))))
                break
        else:
            stack.pop()
            on_path.discard(node)
    return reached, back


def _successors(edges) -> dict:
    succ = {}
    for s, t, _ in edges:
        succ.setdefault(s, []).append(t)
    return succ


def _columns(codes, edges, reached, back) -> dict:
    """Longest-path columns of the reached states (the forward edges form a DAG: relax them in topological
    order); the others share the column after the last."""
    reached_set = set(reached)
    forward = [(s, t) for s, t, _ in edges if (s, t) not in back and s in reached_set and s != t]
    indegree = {c: 0 for c in reached}
    succ = {}
    for s, t in forward:
        indegree[t] += 1
        succ.setdefault(s, []).append(t)
    column = {c: 0 for c in reached}
    ready = [c for c in reached if indegree[c] == 0]
    while ready:
        node = ready.pop()
        for t in succ.get(node, ()):
            column[t] = max(column[t], column[node] + 1)
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    last = max(column.values(), default=-1) + 1
    return {c: column.get(c, last) if c in reached_set else last for c in codes}


def _order(codes, columns, forward, reached) -> tuple[list, dict]:
    """Each column's slots top to bottom (state codes, and ("via", i, column) placeholders of long edges),
    ordered by barycenter sweeps; and each forward edge's chain of slots."""
    count = max(columns.values(), default=-1) + 1
    rank = {c: i for i, c in enumerate(reached)}
    order = [[] for _ in range(count)]
    for c in sorted(codes, key=lambda c: (rank.get(c, len(rank)), c)):
        order[columns[c]].append(c)
    chains = {}
    links = []  # (upper slot, lower slot) between neighbouring columns
    for i, (s, t, _) in enumerate(forward):
        chain = [s] + [("via", i, col) for col in range(columns[s] + 1, columns[t])] + [t]
        for slot in chain[1:-1]:
            order[slot[2]].append(slot)
        links.extend(pairwise(chain))
        chains[(s, t)] = chain
    ups, downs = {}, {}
    for a, b in links:
        downs.setdefault(a, []).append(b)
        ups.setdefault(b, []).append(a)
    for _ in range(SWEEPS):
        for col in range(1, count):
            _sort_by_barycenter(order[col], order[col - 1], ups)
        for col in range(count - 2, -1, -1):
            _sort_by_barycenter(order[col], order[col + 1], downs)
    return order, chains


def _sort_by_barycenter(column, neighbour_column, neighbours) -> None:
    at = {slot: i for i, slot in enumerate(neighbour_column)}
    current = {slot: i for i, slot in enumerate(column)}

    def key(slot):
        placed = [at[n] for n in neighbours.get(slot, ()) if n in at]
        # Slots with no neighbour there keep their place; ties keep the current order (deterministic).
        return (sum(placed) / len(placed) if placed else current[slot], current[slot])

    column.sort(key=key)


def _place(order) -> dict:
    """slot -> (x, y, h): columns left to right, each centred vertically."""
    heights = [sum(NODE_H if isinstance(s, int) else DUMMY_H for s in col) + GAP_Y * max(len(col) - 1, 0)
               for col in order]
    tallest = max(heights, default=0)
    slots = {}
    for index, col in enumerate(order):
        x = MARGIN_X + index * (NODE_W + GAP_X)
        y = MARGIN_Y + (tallest - heights[index]) / 2
        for slot in col:
            h = NODE_H if isinstance(slot, int) else DUMMY_H
            slots[slot] = (x, y, h)
            y += h + GAP_Y
    return slots


def _route(edges, forward, chains, slots, nodes, nodes_bottom, initial) -> tuple[list, int, float | None]:
    """Every edge's path, how many lanes under the graph the back edges took, and where the start mark
    meets the initial state (the top of its left side, above the edges that come in there too)."""
    forward_set = {(s, t) for s, t, _ in forward}
    outs, ins = {}, {}  # code -> [(sort key, edge)] on its right, and on its left side
    if initial in nodes:
        ins[initial] = [(float("-inf"), ("start", initial))]
    for s, t, _ in edges:
        if s == t:
            continue
        if (s, t) in forward_set:
            chain = chains[(s, t)]
            outs.setdefault(s, []).append((_mid_y(slots[chain[1]]), (s, t)))
            ins.setdefault(t, []).append((_mid_y(slots[chain[-2]]), (s, t)))
        else:  # around the graph: below everything
            outs.setdefault(s, []).append((float("inf"), (s, t)))
            ins.setdefault(t, []).append((float("inf"), (s, t)))
    out_y, in_y = _ports(outs, nodes), _ports(ins, nodes)
    paths, lane = [], 0
    for s, t, kind in edges:
        if s == t:
            paths.append(EdgePath(s, t, kind, True, _loop(nodes[s])))
        elif (s, t) in forward_set:
            paths.append(EdgePath(s, t, kind, False, _forward(chains[(s, t)], slots, out_y[(s, t)], in_y[(s, t)])))
        else:
            channel_y = nodes_bottom + BACK_LANE_GAP + BACK_LANE_STEP * lane
            paths.append(EdgePath(s, t, kind, True,
                                  _around(nodes[s], nodes[t], out_y[(s, t)], in_y[(s, t)], channel_y, lane)))
            lane += 1
    return paths, lane, in_y.get(("start", initial))


def _mid_y(slot) -> float:
    _, y, h = slot
    return y + h / 2


def _ports(sides, nodes) -> dict:
    """edge -> the y where it meets a box's side: the edges of one side spread around its middle, in the
    order of where they come from or go, so that they do not cross there."""
    port = {}
    for code, entries in sides.items():
        box = nodes[code]
        entries.sort(key=lambda e: (e[0], e[1]))
        step = min(PORT_STEP, (box.h - 16) / max(len(entries) - 1, 1))
        for i, (_, edge) in enumerate(entries):
            port[edge] = box.y + box.h / 2 + (i - (len(entries) - 1) / 2) * step
    return port


def _forward(chain, slots, start_y, end_y) -> str:
    """A smooth path through the chain's slots: from the source's right side to the target's left side."""
    x, _, _ = slots[chain[0]]
    points = [(x + NODE_W, start_y)]
    for slot in chain[1:-1]:
        sx = slots[slot][0]
        y = _mid_y(slots[slot])
        points += [(sx, y), (sx + NODE_W, y)]
    points.append((slots[chain[-1]][0], end_y))
    d = [f"M{_n(points[0][0])} {_n(points[0][1])}"]
    for i in range(0, len(points) - 1, 2):
        (x1, y1), (x2, y2) = points[i], points[i + 1]
        bend = (x2 - x1) / 2
        d.append(f"C{_n(x1 + bend)} {_n(y1)} {_n(x2 - bend)} {_n(y2)} {_n(x2)} {_n(y2)}")
        if i + 2 < len(points):
            d.append(f"L{_n(points[i + 2][0])} {_n(points[i + 2][1])}")
    return " ".join(d)


def _around(source, target, start_y, end_y, channel_y, lane) -> str:
    """Out of the source's right side, down beside its column, along a lane under the boxes, and up beside
    the target's column into its left side: it stays in the gaps, so it crosses no box."""
    out_x = source.x + source.w + 4 + 6 * (lane % 3)
    in_x = target.x - 4 - 6 * (lane % 3)
    return (f"M{_n(source.x + source.w)} {_n(start_y)} "
            f"C{_n(out_x + BACK_BEND)} {_n(start_y)} {_n(out_x + BACK_BEND)} {_n(channel_y)} {_n(out_x)} {_n(channel_y)} "
            f"L{_n(in_x)} {_n(channel_y)} "
            f"C{_n(in_x - BACK_BEND)} {_n(channel_y)} {_n(in_x - BACK_BEND)} {_n(end_y)} {_n(target.x)} {_n(end_y)}")


def _loop(box) -> str:
    """A state that may follow itself: a loop on its right side, in the gap after its column."""
    x, y = box.x + box.w, box.y + box.h / 2
    return f"M{_n(x)} {_n(y - 14)} C{_n(x + 34)} {_n(y - 34)} {_n(x + 34)} {_n(y + 34)} {_n(x)} {_n(y + 14)}"


def _n(value) -> str:
    """A coordinate, short: whole numbers without a decimal point."""
    return str(int(value)) if value == int(value) else f"{value:.1f}"


# --- markup -----------------------------------------------------------------------------------------------

# Placeholders for what render_svg fills in; a name cannot contain them (control characters are dropped).
_SLOT = "\x00"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Defaults the console's stylesheet can override: :where() gives them no specificity, and colours come from
# CSS variables or currentColor so that a dark theme only sets the variables (or the text colour).
_STYLE = """<style>
:where(.state-graph) { font: 12px system-ui, sans-serif; }
:where(.state-graph) .node .box { fill: var(--graph-node-bg, Canvas); stroke: currentColor; stroke-width: 1.2; }
:where(.state-graph) .node.final .box { stroke-width: 2.4; }
:where(.state-graph) .node .inner { fill: none; stroke: currentColor; stroke-width: 1; }
:where(.state-graph) .node.initial .box { stroke: var(--graph-initial, currentColor); stroke-width: 2; }
:where(.state-graph) .node .start { fill: currentColor; }
:where(.state-graph) .node text { fill: currentColor; }
:where(.state-graph) .node .label { font-size: 13px; font-weight: 600; }
:where(.state-graph) .node .count-open { font-size: 22px; font-weight: 700; }
:where(.state-graph) .node .count-open-label, :where(.state-graph) .node .counts { font-size: 10px; opacity: .75; }
:where(.state-graph) .node a:hover .box { stroke-width: 2.4; }
:where(.state-graph) .dot.healthy { fill: var(--graph-healthy, #2e9d4f); }
:where(.state-graph) .dot.unknown { fill: var(--graph-unknown, #8a8a8a); }
:where(.state-graph) .dot.unhealthy { fill: var(--graph-unhealthy, #d33a2c); }
:where(.state-graph) .edge { fill: none; stroke: var(--graph-edge, currentColor); stroke-width: 1.4; }
:where(.state-graph) .edge.alternate { stroke: var(--graph-alternate, #8a6fd1); stroke-dasharray: 5 4; }
:where(.state-graph) .arrow.normal { fill: var(--graph-edge, currentColor); }
:where(.state-graph) .arrow.alternate { fill: var(--graph-alternate, #8a6fd1); }
</style>"""


def _head_markup(ticket_type, width, height, paths) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", f"{ticket_type.metaservice}-{ticket_type.name}")
    marker = {NORMAL: f"graph-{slug}-normal", ALTERNATE: f"graph-{slug}-alternate"}
    label = html.escape(f"State graph of ticket type {ticket_type.metaservice}/{ticket_type.name}")
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="state-graph" role="img" aria-label="{label}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" width="{_n(width)}" height="{_n(height)}" '
        f'data-type="{html.escape(_clean("/".join(ticket_type.key)))}">',
        _STYLE,
        "<defs>",
        # A filled triangle for a normal edge, an open chevron for an alternate one.
        f'<marker id="{marker[NORMAL]}" class="arrow normal" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z"/></marker>',
        f'<marker id="{marker[ALTERNATE]}" class="arrow alternate" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
        '<path d="M0 0L10 5L0 10L3 5z"/></marker>',
        "</defs>",
        '<g class="edges">',
    ]
    for edge in paths:
        head.append(f'<path class="{edge.css_class}" data-from="{edge.source}" data-to="{edge.target}" '
                    f'd="{edge.d}" marker-end="url(#{marker[edge.kind]})"/>')
    head.append('</g><g class="nodes">')
    return "".join(head)


def _clean(text) -> str:
    return _CONTROL.sub("", str(text))


def _node_markup(ticket_type, box, start_y) -> tuple:
    """The node's markup, split where render_svg puts the link, the health dot's class and title (twice:
    its data attribute too), and the five counts."""
    state = ticket_type.states[box.code]
    code = box.code
    name = _clean(state.name)
    room = int((box.w - 2 * 12 - 2 * DOT_R - 8) / CHAR_W_PX) - len(str(code)) - 1
    shown = name if len(name) <= room else name[:max(room - 1, 1)] + "…"
    title = f"{code} {name}" + (f": {_clean(state.description)}" if state.description else "")
    if state.final:
        title += " (final" + (f", {state.outcome})" if state.outcome else ")")
    classes = "node" + (" final" if state.final else "") + (" initial" if code == ticket_type.initial else "")
    x, y, w, h = box.x, box.y, box.w, box.h
    left = x + 12
    esc = html.escape
    inner = (f'<rect class="inner" x="{_n(x + 3)}" y="{_n(y + 3)}" width="{_n(w - 6)}" height="{_n(h - 6)}" rx="4"/>'
             if state.final else "")
    start = (f'<circle class="start" cx="{_n(x - 26)}" cy="{_n(start_y)}" r="5"/>'
             f'<path class="edge normal start" d="M{_n(x - 21)} {_n(start_y)}H{_n(x - 2)}"/>'
             if code == ticket_type.initial else "")
    s = _SLOT
    counted = f'data-state="{code}"'
    markup = (
        f'<g class="{classes}" id="state-{code}" data-state="{code}"><title>{esc(title)}</title>{start}'
        f'<a href="{s}">'
        f'<rect class="box" x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="6"/>{inner}'
        f'<text class="label" x="{_n(left)}" y="{_n(y + 20)}"><tspan class="code">{code}</tspan> {esc(shown)}</text>'
        f'<circle class="dot {s}" cx="{_n(x + w - 12 - DOT_R)}" cy="{_n(y + 15)}" r="{DOT_R}" data-health="{s}">'
        f'<title>{s}</title></circle>'
        f'<text class="count-open" {counted} x="{_n(left)}" y="{_n(y + 47)}">{s}</text>'
        f'<text class="count-open-label" x="{_n(x + w - 12)}" y="{_n(y + 47)}" text-anchor="end">open</text>'
        f'<text class="counts" x="{_n(left)}" y="{_n(y + h - 10)}">'
        f'due <tspan class="count-due" {counted}>{s}</tspan> · '
        f'held <tspan class="count-held" {counted}>{s}</tspan> · '
        f'waiting <tspan class="count-waiting" {counted}>{s}</tspan> · '
        f'error <tspan class="count-parked" {counted}>{s}</tspan></text>'
        "</a></g>"
    )
    return tuple(markup.split(_SLOT))
