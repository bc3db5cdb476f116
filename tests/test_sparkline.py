"""The console's sparkline: valid SVG with a line per run of values, gaps where a value is missing, an escaped
hover title, and a "no data yet" box when there is nothing to draw."""

import xml.etree.ElementTree as ET

import pytest

from api.console.sparkline import sparkline_svg

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg" and root.get("class") == "spark"
    return root


def lines(root) -> list[list[tuple[float, float]]]:
    return [[tuple(map(float, pair.split(","))) for pair in line.get("points").split()]
            for line in root.iter(f"{SVG}polyline")]


def test_values_make_one_line_across_the_box_highest_at_the_top_zero_at_the_bottom():
    root = parse(sparkline_svg([0, 5, 10], width=100, height=20, title="done"))
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("100", "20", "0 0 100 20")
    assert lines(root) == [[(1.0, 19.0), (50.0, 10.0), (99.0, 1.0)]]


@pytest.mark.parametrize("values, runs, dots", [
    ([1, 2, None, 3, 4], 2, 0),
    ([None, 1, 2, None], 1, 0),
    ([1, None, 2, 3], 1, 1),  # a lone value between gaps is a dot, not an invisible line
    ([1, float("nan"), 2, 3], 1, 1),  # not a number: a gap too
])
def test_none_is_a_gap(values, runs, dots):
    root = parse(sparkline_svg(values, title="hop p50"))
    assert len(lines(root)) == runs
    assert len(list(root.iter(f"{SVG}circle"))) == dots


def test_equal_values_draw_a_flat_line_at_their_height_from_zero():
    root = parse(sparkline_svg([4, 4, 4], width=30, height=10, title="flat"))
    assert {y for x, y in lines(root)[0]} == {1.0}
    zeros = parse(sparkline_svg([0, 0], width=30, height=10, title="idle"))
    assert {y for x, y in lines(zeros)[0]} == {9.0}


def test_the_title_is_escaped_and_shown_on_hover():
    svg = sparkline_svg([1, 2], title='bot <a&b> "x"')
    root = parse(svg)
    assert root.find(f"{SVG}title").text == 'bot <a&b> "x"'
    assert root.get("aria-label") == 'bot <a&b> "x"'
    assert "<a&b>" not in svg


@pytest.mark.parametrize("values", [[], [None, None]])
def test_nothing_to_draw_says_no_data_yet(values):
    root = parse(sparkline_svg(values, title="new bot"))
    assert root.find(f"{SVG}text").text == "no data yet"
    assert root.find(f"{SVG}title").text == "new bot"
    assert lines(root) == []


def test_a_size_that_is_not_positive_is_refused_by_name():
    with pytest.raises(ValueError, match="0x24"):
        sparkline_svg([1], width=0, title="x")
