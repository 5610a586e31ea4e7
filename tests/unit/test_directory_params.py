"""Query-string checks of the discovery routes (gateways/directory.py): each bad value is a 400 naming it."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from gateways.directory import boolean, category, choice, limit, params
from gateways.errors import BadRequest


def test_params_refuse_unknown_and_repeated_names() -> None:
    assert params(QueryParams("sort=recent&limit=5"), {"sort", "limit"}) == {"sort": "recent", "limit": "5"}
    with pytest.raises(BadRequest, match="unknown parameter 'srot'") as exc:
        params(QueryParams("srot=recent"), {"sort", "limit"})
    assert exc.value.status == 400 and exc.value.extra == {"field": "srot"}
    with pytest.raises(BadRequest, match="'sort' is given more than once"):
        params(QueryParams("sort=recent&sort=viewers"), {"sort"})


@pytest.mark.parametrize("raw", ["0", "101", "-1", "abc", "1.5", "١٢"])
def test_limit_must_be_a_whole_number_in_range(raw: str) -> None:
    with pytest.raises(BadRequest, match="from 1 to 100"):
        limit({"limit": raw}, 24, 100)


def test_limit_defaults_when_absent_or_empty() -> None:
    assert limit({}, 24, 100) == 24 and limit({"limit": ""}, 24, 100) == 24 and limit({"limit": "100"}, 24, 100) == 100


def test_choice_and_boolean() -> None:
    assert choice({}, "sort", ("viewers", "recent"), "viewers") == "viewers"
    assert choice({"sort": "recent"}, "sort", ("viewers", "recent"), "viewers") == "recent"
    with pytest.raises(BadRequest, match="'sort' must be one of viewers, recent"):
        choice({"sort": "hot"}, "sort", ("viewers", "recent"), "viewers")
    assert boolean({}, "live_only", False) is False
    assert boolean({"live_only": "TRUE"}, "live_only", False) is True
    assert boolean({"live_only": "0"}, "live_only", True) is False
    with pytest.raises(BadRequest, match="'live_only' must be true or false"):
        boolean({"live_only": "yes please"}, "live_only", False)


def test_category_filter_is_a_category_key() -> None:
    assert category({"category": "Just Chatting"}) == "just chatting"
    assert category({}) is None and category({"category": ""}) is None
    with pytest.raises(BadRequest, match="'category' is longer than 64"):
        category({"category": "x" * 65})
