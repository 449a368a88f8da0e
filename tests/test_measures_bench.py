"""The nasolabial benchmark's dot finder: drawn dots are found, their labels' letters are not."""

from __future__ import annotations

import cv2
import numpy as np

from cleftscore.benchmarks.nasolabial import DOT_COLOURS, find_dots


def test_dots_are_found_by_colour_and_shape_and_letters_are_not() -> None:
    img = np.full((400, 400, 3), (200, 160, 140), np.uint8)
    where = {"red": [(100, 80), (300, 90)], "green": [(120, 150), (280, 150)], "blue": [(130, 260), (270, 275)]}
    for name, points in where.items():
        for x, y in points:
            cv2.circle(img, (x, y), 11, DOT_COLOURS[name], -1)
            cv2.putText(img, "N_left", (x + 14, y + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.6, DOT_COLOURS[name], 2)
    dots = find_dots(img)
    for name, points in where.items():
        found = dots[name]
        assert found is not None and len(found) == 2
        np.testing.assert_allclose(np.array(found), np.array(points, dtype=float), atol=0.6)
    one = np.full((200, 200, 3), 255, np.uint8)
    cv2.circle(one, (50, 50), 10, DOT_COLOURS["blue"], -1)
    assert find_dots(one)["blue"] is None and find_dots(one)["red"] is None
