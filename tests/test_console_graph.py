"""The console's state graph (api/console/graph.py): layout and SVG, pure, no database."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from api.console.graph import NODE_H, NODE_W, StateCounts, layout_graph, render_svg
from common.config.builtin import BUILTIN_TYPES
from common.config.load import load
from common.config.models import State, TicketType

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"


def kind(transitions, names=None, initial=1, final=()):
    """A type from [[current, normal next, alternates...], ...]; states are every code named there."""
    codes = sorted({c for row in transitions for c in row} | set(names or {}) | {initial})
    names = names or {}
    return TicketType(
        metaservice="m", name="t", initial=initial,
        states={c: State(c, names.get(c, f"s{c}"), final=c in final) for c in codes},
        transitions={row[0]: tuple(row[1:]) for row in transitions},
        lifetime_s=60, notification_frequency_s=60, retention_s=60,
    )


def shipped_types():
    """Every type of the shipped fleet (config/) and of any example config under examples/, and botfleet's own."""
    roots = [ROOT / "config"] + sorted(p.parent for p in (ROOT / "examples").rglob("fleet.yaml"))
    types = [t for root in roots for t in load(root).types.values()] + list(BUILTIN_TYPES.values())
    return pytest.mark.parametrize("ticket_type", types, ids=lambda t: "/".join(t.key))


def draw(ticket_type, counts=None, health=None, href=lambda code: f"/console/tickets?state={code}"):
    return render_svg(layout_graph(ticket_type), ticket_type, counts or {}, health or {}, href)


def parse(svg):
    return ET.fromstring(svg)  # also proves the markup well-formed


def node(root, code):
    [found] = [g for g in root.iter(f"{SVG}g") if g.get("id") == f"state-{code}"]
    return found


def by_class(element, css_class):
    return [e for e in element.iter() if css_class in (e.get("class") or "").split()]


@pytest.mark.parametrize("transitions", [
    [[1, 2], [2, 3]],
    [[1, 2], [2, 3], [3, 4], [4, 5], [5, 6]],
    [[3, 1], [1, 2]],  # codes out of order: the path decides, not the code
])
def test_a_chain_runs_left_to_right_on_one_line(transitions):
    t = kind(transitions, initial=transitions[0][0])
    layout = layout_graph(t)
    chain = [transitions[0][0]] + [row[1] for row in transitions]
    xs = [layout.nodes[c].x for c in chain]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert len({layout.nodes[c].y for c in chain}) == 1


@pytest.mark.parametrize("transitions, column", [
    ([[1, 2, 3]], {1: 0, 2: 1, 3: 1}),
    ([[1, 2, 3, 4]], {1: 0, 2: 1, 3: 1, 4: 1}),
    ([[1, 2, 3], [2, 4], [3, 4]], {1: 0, 2: 1, 3: 1, 4: 2}),
    # longest path: 3 comes after 2 even though 1 also leads straight to it
    ([[1, 2, 3], [2, 3]], {1: 0, 2: 1, 3: 2}),
])
def test_alternates_share_the_next_column_one_above_another(transitions, column):
    layout = layout_graph(kind(transitions))
    assert {c: box.column for c, box in layout.nodes.items()} == column
    for col in set(column.values()):
        ys = [layout.nodes[c].y for c in column if column[c] == col]
        assert len(set(ys)) == len(ys)
    xs = [{layout.nodes[c].x for c in column if column[c] == col} for col in sorted(set(column.values()))]
    assert all(len(x) == 1 for x in xs)  # a column is one x, and columns run left to right
    assert [x.pop() for x in xs] == sorted({box.x for box in layout.nodes.values()})


@pytest.mark.parametrize("transitions, back", [
    ([[1, 2], [2, 3, 1]], {(2, 1)}),
    ([[1, 2], [2, 3], [3, 1]], {(3, 1)}),
    ([[1, 2], [2, 2, 3]], {(2, 2)}),  # a state that may follow itself
    ([[1, 2, 3], [2, 3], [3, 2, 4]], {(3, 2)}),
])
def test_a_cycle_ends_and_its_back_edge_is_drawn_around(transitions, back):
    layout = layout_graph(kind(transitions))
    assert {(e.source, e.target) for e in layout.edges if e.back} == back
    assert all("C" in e.d for e in layout.edges if e.back)  # curves, not straight lines through boxes
    svg = draw(kind(transitions))
    for source, target in back:
        [path] = [p for p in parse(svg).iter(f"{SVG}path")
                  if p.get("data-from") == str(source) and p.get("data-to") == str(target)]
        assert "back" in path.get("class").split()


def test_normal_and_alternate_edges_differ():
    root = parse(draw(kind([[1, 2, 3]])))
    classes = {(p.get("data-from"), p.get("data-to")): p.get("class") for p in by_class(root, "edge")
               if p.get("data-from")}
    assert classes == {("1", "2"): "edge normal", ("1", "3"): "edge alternate"}
    markers = {p.get("class"): p.get("marker-end") for p in by_class(root, "edge") if p.get("data-from")}
    assert markers["edge normal"] != markers["edge alternate"]


@pytest.mark.parametrize("transitions, unreached", [
    ([[1, 2]], {3: "s3"}),
    ([[1, 2], [3, 1]], {3: "s3"}),  # leads into the graph, never reached from its start
    ([[1, 2], [3, 4], [4, 3]], {}),  # a cycle of their own, apart from the rest
])
def test_an_unreachable_state_is_still_drawn_in_a_last_column(transitions, unreached):
    t = kind(transitions, names=unreached)
    layout = layout_graph(t)
    last = max(box.column for box in layout.nodes.values())
    reached = {1, 2}
    assert {c for c, box in layout.nodes.items() if box.column == last} == set(t.states) - reached
    root = parse(draw(t))
    for code in set(t.states) - reached:
        node(root, code)
    assert all(e.back for e in layout.edges if e.source not in reached)


def overlap(a, b) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def path_points(d, per_curve=24):
    """Points along an SVG path of M, L, H and C commands (what graph.py writes)."""
    points, here = [], None
    for command, args in re.findall(r"([MLHC])([^MLHC]*)", d):
        nums = [float(n) for n in args.split()]
        if command == "M":
            here = tuple(nums)
        elif command in "LH":
            end = tuple(nums) if command == "L" else (nums[0], here[1])
            points += [(here[0] + (end[0] - here[0]) * i / per_curve, here[1] + (end[1] - here[1]) * i / per_curve)
                       for i in range(per_curve + 1)]
            here = end
        else:
            (x1, y1, x2, y2, x3, y3) = nums
            for i in range(per_curve + 1):
                s = i / per_curve
                u = 1 - s
                points.append((u**3 * here[0] + 3 * u * u * s * x1 + 3 * u * s * s * x2 + s**3 * x3,
                               u**3 * here[1] + 3 * u * u * s * y1 + 3 * u * s * s * y2 + s**3 * y3))
            here = (x3, y3)
    return points


def inside(point, box, margin=1.0) -> bool:
    x, y = point
    return box.x + margin < x < box.x + box.w - margin and box.y + margin < y < box.y + box.h - margin


SYNTHETIC = [
    kind([[1, 2], [2, 3, 1]]),
    kind([[1, 2, 5], [2, 3, 1], [3, 4], [4, 5, 9], [5, 6], [6, 7, 2], [7, 8], [8, 9, 10], [9, 10]]),
    kind([[1, 2, 3, 4, 5], [2, 6], [3, 6], [4, 6, 1], [5, 6, 5]], names={7: "unreached"}),
]


@shipped_types()
def test_no_boxes_overlap_and_no_edge_runs_through_one_in_shipped_types(ticket_type):
    check_geometry(ticket_type)


@pytest.mark.parametrize("ticket_type", SYNTHETIC, ids=range(len(SYNTHETIC)))
def test_no_boxes_overlap_and_no_edge_runs_through_one_in_tangled_types(ticket_type):
    check_geometry(ticket_type)


def check_geometry(ticket_type):
    layout = layout_graph(ticket_type)
    boxes = list(layout.nodes.values())
    assert {b.code for b in boxes} == set(ticket_type.states)
    for i, a in enumerate(boxes):
        assert (a.w, a.h) == (NODE_W, NODE_H)
        assert 0 <= a.x and a.x + a.w <= layout.width and 0 <= a.y and a.y + a.h <= layout.height
        for b in boxes[i + 1:]:
            assert not overlap(a, b), (a, b)
    for edge in layout.edges:
        for point in path_points(edge.d):
            assert 0 <= point[0] <= layout.width and 0 <= point[1] <= layout.height, (edge, point)
            assert not any(inside(point, box) for box in boxes), (edge, point)


@shipped_types()
def test_every_state_appears_once_as_a_node(ticket_type):
    svg = draw(ticket_type)
    for code in ticket_type.states:
        assert svg.count(f'id="state-{code}"') == 1
    assert len(re.findall(r'id="state-', svg)) == len(ticket_type.states)
    root = parse(svg)
    assert root.get("role") == "img" and "/".join(ticket_type.key) in root.get("aria-label")
    assert root.get("viewBox").startswith("0 0 ")


def test_counts_appear_in_each_node_and_a_missing_state_counts_zero():
    t = kind([[1, 2, 3]])
    root = parse(draw(t, counts={2: StateCounts(open=17, due=3, held=1, waiting=4, parked=2)}))
    shown = {code: {c: e.text for c in ("open", "due", "held", "waiting", "parked")
                    for e in by_class(node(root, code), f"count-{c}") if e.get("data-state") == str(code)}
             for code in (1, 2, 3)}
    assert shown[2] == {"open": "17", "due": "3", "held": "1", "waiting": "4", "parked": "2"}
    assert shown[1] == shown[3] == {"open": "0", "due": "0", "held": "0", "waiting": "0", "parked": "0"}


@pytest.mark.parametrize("health, dot, title", [
    ("healthy", "healthy", "health: healthy"),
    (None, "unknown", "health unknown"),
    ("hung", "unhealthy", "health: hung"),
    ("dead", "unhealthy", "health: dead"),
    ("<b>odd</b>", "unhealthy", "health: <b>odd</b>"),
])
def test_each_node_has_a_dot_coloured_by_its_health(health, dot, title):
    root = parse(draw(kind([[1, 2]]), health={1: health}))
    [circle] = by_class(node(root, 1), "dot")
    assert circle.get("class").split() == ["dot", dot]
    assert circle.find(f"{SVG}title").text == title


def test_names_and_links_are_escaped():
    name = 'a<b> & "c"'
    t = kind([[1, 2]], names={2: name})
    svg = draw(t, href=lambda code: f'/console/tickets?state={code}&q="x"<')
    assert "<b>" not in svg and '"c"' not in svg
    root = parse(svg)
    assert name in node(root, 2).find(f"{SVG}title").text
    [label] = by_class(node(root, 2), "label")
    assert "".join(label.itertext()) == f"2 {name}"
    [link] = node(root, 2).iter(f"{SVG}a")
    assert link.get("href") == '/console/tickets?state=2&q="x"<'


@pytest.mark.parametrize("name, shown", [
    ("short", "short"),
    ("a_rather_long_state_name_that_goes_on_and_on", None),
])
def test_a_long_name_is_cut_with_an_ellipsis_and_kept_whole_in_the_title(name, shown):
    root = parse(draw(kind([[1, 2]], names={2: name})))
    [label] = by_class(node(root, 2), "label")
    text = "".join(label.itertext())
    if shown:
        assert text == f"2 {shown}"
    else:
        assert text.endswith("…") and len(text) < len(name) and name.startswith(text[2:-1])
    assert name in node(root, 2).find(f"{SVG}title").text


def test_final_and_initial_states_are_marked():
    root = parse(draw(kind([[1, 2, 3]], final=(2, 3))))
    assert node(root, 1).get("class").split() == ["node", "initial"]
    assert node(root, 2).get("class").split() == ["node", "final"]


def test_a_layout_draws_only_its_own_type():
    t = kind([[1, 2]])
    other = TicketType(**{**t.__dict__, "name": "other"})
    with pytest.raises(ValueError, match="m/t cannot draw m/other"):
        render_svg(layout_graph(t), other, {}, {}, str)


def test_the_layout_is_deterministic():
    t = SYNTHETIC[1]
    assert layout_graph(t) == layout_graph(t)
    assert draw(t) == draw(t)
