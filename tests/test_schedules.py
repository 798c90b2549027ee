"""Scale schedules against the upstream reference table (tests/data/reference/schedules.txt)."""

import ast
import math
import re

import pytest
import torch
from conftest import REFERENCE_DIR

from generators.schedules import (
    H_DIV_W_TEMPLATES,
    MAX_SCALES,
    PIXEL_BUDGETS,
    ScaleSchedule,
    custom_schedule,
    get_schedule,
    image_size,
    snap_h_div_w,
)

REFERENCE_LINES = (REFERENCE_DIR / "schedules.txt").read_text().splitlines()
SCHEDULE_LINE = re.compile(
    r"ratio=(?P<ratio>\S+) pn=(?P<pn>\S+) pixel\(HxW\)=(?P<pixel>\(.*?\)) "
    r"nscales=(?P<n>\d+) L=(?P<L>\d+) scales=(?P<scales>\[.*\])"
)
SCHEDULE_ROWS = [m.groupdict() for m in map(SCHEDULE_LINE.fullmatch, REFERENCE_LINES) if m]


def _reference_section(title: str) -> list[str]:
    """Lines after `title` up to the next line that is not a rope-position row."""
    start = REFERENCE_LINES.index(title) + 1
    section = []
    for line in REFERENCE_LINES[start:]:
        if not re.match(r"\d+ \[", line):
            break
        section.append(line)
    return section


def _rows_of_scale(schedule: ScaleSchedule, si: int) -> list[int]:
    """Row positions of scale si, one per token row."""
    rows_L, _ = schedule.rope_positions()
    w = schedule.scales[si][1]
    return rows_L[schedule.token_offsets[si] : schedule.token_offsets[si + 1] : w].tolist()


def _cols_of_scale(schedule: ScaleSchedule, si: int) -> list[int]:
    """Column positions of scale si, one per token column."""
    _, cols_L = schedule.rope_positions()
    w = schedule.scales[si][1]
    return cols_L[schedule.token_offsets[si] : schedule.token_offsets[si] + w].tolist()


def test_reference_file_covers_every_template_and_budget():
    assert len(SCHEDULE_ROWS) == len(H_DIV_W_TEMPLATES) * len(PIXEL_BUDGETS) == 60
    header = REFERENCE_LINES[0].removeprefix("h_div_w_templates: ")
    assert tuple(ast.literal_eval(header)) == H_DIV_W_TEMPLATES


@pytest.mark.parametrize("row", SCHEDULE_ROWS, ids=lambda r: f"{r['ratio']}-{r['pn']}")
def test_schedule_matches_reference(row):
    schedule = get_schedule(float(row["ratio"]), row["pn"])
    assert list(schedule.scales) == ast.literal_eval(row["scales"])
    assert schedule.num_scales == int(row["n"]) == PIXEL_BUDGETS[row["pn"]]
    assert schedule.total_tokens == int(row["L"]) == schedule.token_offsets[-1]
    assert image_size(schedule) == ast.literal_eval(row["pixel"])
    assert schedule.rope_grid == get_schedule(float(row["ratio"]), "1M").final_hw


def test_square_rope_rows_and_offsets_match_reference():
    schedule = get_schedule(1.0, "1M")
    sides = [h for h, _ in schedule.scales]
    rope_lines = _reference_section("rope row positions (1:1, 1M):")
    assert len(rope_lines) == schedule.num_scales
    for line in rope_lines:
        side, expected = line.split(" ", 1)
        si = sides.index(int(side))
        assert _rows_of_scale(schedule, si) == ast.literal_eval(expected)
        assert _cols_of_scale(schedule, si) == ast.literal_eval(expected)
    cumulative = next(line for line in REFERENCE_LINES if line.startswith("cumulative tokens "))
    assert list(schedule.token_offsets[1:]) == ast.literal_eval(cumulative.removeprefix("cumulative tokens "))


@pytest.mark.parametrize(
    ("side", "expected"),
    [
        (1, [0]),
        (2, [0, 32]),
        (4, [0, 16, 32, 48]),
        (6, [0, 11, 21, 32, 43, 53]),
        (12, [0, 5, 11, 16, 21, 27, 32, 37, 43, 48, 53, 59]),
    ],
)
def test_square_rope_positions_from_notes(side, expected):
    schedule = get_schedule(1.0, "1M")
    si = [h for h, _ in schedule.scales].index(side)
    assert _rows_of_scale(schedule, si) == expected
    assert _cols_of_scale(schedule, si) == expected


def test_rope_positions_round_half_to_even():
    # 1:3 template, grid (37, 111): scale (2, 2) sits at rows [0, 18.5], cols [0, 55.5]
    schedule = get_schedule(0.333, "1M")
    assert _rows_of_scale(schedule, 1) == [0, 18]
    assert _cols_of_scale(schedule, 1) == [0, 56]


def test_rope_positions_use_float32_like_upstream():
    # 27 * (111 / 54) is just below 55.5 in float64 but exactly 55.5 in float32 -> 56 upstream
    schedule = get_schedule(3.0, "1M")
    assert schedule.scales[9] == (54, 18)
    assert _rows_of_scale(schedule, 9)[27] == 56


def test_rope_positions_layout():
    schedule = get_schedule(0.571, "1M")
    rows_L, cols_L = schedule.rope_positions()
    assert rows_L.dtype == cols_L.dtype == torch.int64
    assert rows_L.shape == cols_L.shape == (schedule.total_tokens,)
    grid_h, grid_w = schedule.rope_grid
    assert rows_L.min() >= 0 and rows_L.max() < grid_h
    assert cols_L.min() >= 0 and cols_L.max() < grid_w
    # the finest scale covers the grid one to one, row-major
    h, w = schedule.final_hw
    last = slice(schedule.token_offsets[-2], None)
    assert torch.equal(rows_L[last], torch.arange(h).repeat_interleave(w))
    assert torch.equal(cols_L[last], torch.arange(w).repeat(h))


@pytest.mark.parametrize("pn", ["0.06M", "0.25M", "0.60M"])
def test_smaller_budgets_are_prefixes_with_shared_rope(pn):
    full = get_schedule(1.333, "1M")
    small = get_schedule(1.333, pn)
    assert full.truncated(small.num_scales) == small
    for full_pos, small_pos in zip(full.rope_positions(), small.rope_positions(), strict=True):
        assert torch.equal(full_pos[: small.total_tokens], small_pos)


def test_token_offsets():
    schedule = custom_schedule([(1, 1), (2, 3), (4, 5)])
    assert schedule.tokens_per_scale == (1, 6, 20)
    assert schedule.token_offsets == (0, 1, 7, 27)
    assert schedule.total_tokens == 27
    assert schedule.final_hw == (4, 5)
    assert schedule.rope_grid == (4, 5)
    assert image_size(schedule, downsample_factor=8) == (32, 40)


@pytest.mark.parametrize(
    ("ratio", "template"),
    [(1.0, 1.0), (1.02, 1.0), (0.7, 0.666), (0.31, 0.333), (3.2, 3.0), (1.3, 1.333), (1024 / 1820, 0.571)],
)
def test_snap_to_nearest_template(ratio, template):
    assert snap_h_div_w(ratio) == template


@pytest.mark.parametrize(("ratio", "template"), [(0.9, 1.0), (1.125, 1.0), (0.45, 0.5), (2.75, 2.5)])
def test_snap_ties_go_to_the_template_nearer_square(ratio, template):
    # upstream takes the first template in its dict order (1.0, 1.25, 0.8, 1.333, 0.75, ...)
    assert snap_h_div_w(ratio) == template


@pytest.mark.parametrize("ratio", [0.0, -1.0, math.nan, math.inf, 10.0, 0.25, 3.5])
def test_unsupported_aspect_ratio(ratio):
    with pytest.raises(ValueError, match=r"unsupported aspect ratio.*supported templates"):
        get_schedule(ratio)


def test_unknown_pixel_budget():
    with pytest.raises(ValueError, match=r"unknown pixel budget '2M'.*0\.06M.*1M"):
        get_schedule(1.0, "2M")


@pytest.mark.parametrize(
    ("scales", "rope_grid", "message"),
    [
        ([], None, "at least one scale"),
        ([(1, 1)] * (MAX_SCALES + 1), None, "at most 15"),
        ([(1, 1), (0, 2)], None, "positive"),
        ([(1, 1), (4, 4), (3, 5)], None, "must not shrink"),
        ([(1, 1), (4, 4)], (4, 3), "smaller than the last scale"),
    ],
)
def test_custom_schedule_validation(scales, rope_grid, message):
    with pytest.raises(ValueError, match=message):
        custom_schedule(scales, rope_grid)


def test_truncated_bounds():
    schedule = get_schedule(1.0, "0.06M")
    assert schedule.truncated(1).scales == ((1, 1),)
    for bad in (0, schedule.num_scales + 1):
        with pytest.raises(ValueError, match="num_scales"):
            schedule.truncated(bad)
