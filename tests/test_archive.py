"""The archive's pure rules: search words, query parameters, keys and cursors."""

from __future__ import annotations

import pytest

from ticker import archive
from ticker.archive import ArchiveQuery, QueryError, parse_query, words
from ticker.config import Vocabulary

VOCABULARY = Vocabulary()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Quake hits the COAST", ["quake", "hits", "the", "coast"]),
        ("La política", ["la", "politica"]),
        ("POLÍTICA y politica", ["politica", "y"]),
        ("Straße", ["strasse"]),
        ("l'état, c'est moi!", ["l", "etat", "c", "est", "moi"]),
        ("2026: 14 dead", ["2026", "14", "dead"]),
        ("عاجلٌ: أمنُ الدولة", ["عاجل", "امن", "الدولة"]),  # short vowels and hamza go
        ("عاجـــل", ["عاجل"]),  # tatweel
        ("إعلان آخر", ["اعلان", "اخر"]),
        # Only marks that combine (canonical class > 0: the virama here) go; vowel signs stay.
        ("नमस्ते दुनिया", ["नमसते", "दुनिया"]),
        ("", []),
        ("!!! ... ---", []),
        ("a a A", ["a"]),
        ("x" * 60, ["x" * archive.WORD_MAX]),
    ],
)
def test_words(text, expected):
    assert words(text) == expected


def test_a_query_and_a_headline_meet_whatever_the_accents():
    assert set(words("Crisis POLÍTICA en Perú")) >= set(words("politica peru"))


def test_terms_of_an_item():
    item = {"status": "withdrawn", "editor": "ann", "headline": "Fire, FIRE"}
    assert archive.record_terms(item) == ["s:withdrawn", "e:ann", "w:fire"]


def test_keys_sort_like_the_archive():
    older = {"created": "2026-01-01T00:00:00.000Z", "id": "en-b"}
    newer = {"created": "2026-01-01T00:00:00.001Z", "id": "en-a"}
    same = {"created": "2026-01-01T00:00:00.001Z", "id": "en-c"}
    keys = [archive.record_key(i) for i in (older, newer, same)]
    assert keys[0] == "1767225600000:en-b"
    assert sorted(keys) == keys


def test_cursor_round_trip_and_refusals():
    key = "1767225600000:en-abc_DEF-12"
    assert archive.decode_cursor(archive.encode_cursor(key)) == key
    for bad in ("", "!!", "bm90IGEga2V5", "x" * 200, "é", archive.encode_cursor("1:en-a")):
        with pytest.raises(QueryError) as caught:
            archive.decode_cursor(bad)
        assert caught.value.field == "cursor"


def params(**values: str) -> dict[str, list[str]]:
    return {name.rstrip("_"): [value] for name, value in values.items()}


def test_a_full_query():
    cursor = archive.encode_cursor("1767225600000:en-x")
    query = parse_query(
        params(
            edition="es",
            status="withdrawn",
            q="Política  PERÚ",
            editor="ann",
            from_="2025-12-01",
            to="2026-02-01T00:00:00+01:00",
            cursor=cursor,
            limit="10",
        ),
        VOCABULARY,
    )
    assert query == ArchiveQuery(
        edition="es",
        status="withdrawn",
        words=("politica", "peru"),
        editor="ann",
        below="1767225600000:en-x",  # the cursor is below `to`
        at_least="1764547200000:",
        limit=10,
    )
    assert query.terms == ("w:politica", "w:peru", "e:ann", "s:withdrawn")


def test_defaults_and_to_below_the_cursor():
    query = parse_query(params(edition="en", to="2020-01-01T00:00:00Z"), VOCABULARY)
    assert (query.status, query.limit, query.terms) == ("all", archive.DEFAULT_LIMIT, ())
    assert query.below == "1577836800000:"
    cursor = archive.encode_cursor("1767225600000:en-x")
    later = parse_query(params(edition="en", to="2020-01-01", cursor=cursor), VOCABULARY)
    assert later.below == "1577836800000:"


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"status": "all"}, "edition"),
        ({"edition": "xx"}, "edition"),
        ({"edition": "en", "status": "gone"}, "status"),
        ({"edition": "en", "q": "x" * 201}, "q"),
        ({"edition": "en", "q": " ... "}, "q"),
        ({"edition": "en", "q": "a b c d e f g h i"}, "q"),
        ({"edition": "en", "editor": "x" * 65}, "editor"),
        ({"edition": "en", "editor": ""}, "editor"),
        ({"edition": "en", "from": "yesterday"}, "from"),
        ({"edition": "en", "from": "2026-13-01"}, "from"),
        ({"edition": "en", "to": "１２３"}, "to"),
        ({"edition": "en", "to": "1900-01-01"}, "to"),
        ({"edition": "en", "from": "2026-01-02", "to": "2026-01-01"}, "to"),
        ({"edition": "en", "cursor": "zzz"}, "cursor"),
        ({"edition": "en", "limit": "0"}, "limit"),
        ({"edition": "en", "limit": "201"}, "limit"),
        ({"edition": "en", "limit": "ten"}, "limit"),
        ({"edition": "en", "limit": "٣"}, "limit"),
        ({"edition": "en", "region": "Europe"}, "region"),
    ],
)
def test_bad_parameters_name_their_field(given, field):
    with pytest.raises(QueryError) as caught:
        parse_query({k: [v] for k, v in given.items()}, VOCABULARY)
    assert caught.value.field == field


def test_a_parameter_given_twice_is_refused():
    with pytest.raises(QueryError) as caught:
        parse_query({"edition": ["en"], "q": ["a", "b"]}, VOCABULARY)
    assert caught.value.field == "q"


def test_which_requests_are_archive_queries():
    assert not archive.is_archive_query({"edition": "en"})
    assert not archive.is_archive_query({"edition": "en", "status": "live", "region": "Europe"})
    assert archive.is_archive_query({"edition": "en", "status": "all"})
    assert archive.is_archive_query({"edition": "en", "status": "live", "q": "x"})
    assert archive.is_archive_query({"edition": "en", "limit": "5"})


def test_pages():
    assert archive.page_of(["c", "b", "a"], 2, None) == (["c", "b"], "b")
    assert archive.page_of(["c", "b"], 2, None) == (["c", "b"], None)
    assert archive.page_of(["c"], 2, "a") == (["c"], "a")  # the budget ran out at "a"
