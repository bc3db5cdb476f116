"""The statements' text as sent: short enough for psycopg to keep its parse, and compacted without changing
what they say."""

from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

from common.store import sql


def test_every_statement_fits_the_parse_cache_of_psycopg():
    # A longer statement is parsed again at every execute: a tenth of what the API's create costs.
    too_long = {name: len(text) for name, text in vars(sql).items()
                if name.isupper() and isinstance(text, str) and len(text) > MAX_CACHED_STATEMENT_LENGTH}
    assert not too_long, f"compact() these, or shorten them: {too_long}"


def test_compact_drops_comments_and_blanks_but_not_quoted_text_or_the_newline_that_joins_two_strings():
    statement = "SELECT  'a -- b',\t\"x  y\"  -- a comment\n    'c'\n\n    'd' -- last"
    assert sql.compact(statement) == "SELECT 'a -- b',\"x  y\"\n'c'\n'd'"
    assert sql.compact("f( a,\n b ) , 'x, ( y )' )") == "f(a,b) ,'x, ( y )')"
    assert sql.compact("a = 'b = c' AND d >= e") == "a='b = c' AND d >=e"
